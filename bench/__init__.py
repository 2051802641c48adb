"""farmsync's benchmarks: speed and memory targets, measured on real nodes (``make bench``)."""
