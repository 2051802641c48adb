"""The inventory: which hosts form the farm and how to reach them (see loader.py)."""

from farmsync.inventory.describe import HostSummary, describe_inventory
from farmsync.inventory.durations import format_duration, parse_duration
from farmsync.inventory.loader import load_inventory
from farmsync.inventory.model import Host, Inventory, InventoryWarning
from farmsync.inventory.patterns import select_hosts
from farmsync.inventory.variables import variables_reference_markdown

__all__ = [
    "Host",
    "HostSummary",
    "Inventory",
    "InventoryWarning",
    "describe_inventory",
    "format_duration",
    "load_inventory",
    "parse_duration",
    "select_hosts",
    "variables_reference_markdown",
]
