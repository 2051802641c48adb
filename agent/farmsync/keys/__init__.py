"""Key material: the machineKey model, generation, rendering and the disclosed-keys list."""
