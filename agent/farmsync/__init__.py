"""farmsync: keep the ASP.NET <machineKey> identical on every node of an IIS web farm.

Layers (lower never imports higher):
  errors                    the one error tree, importable everywhere
  inventory/                inventory, host variables and policy
  keys/, webconfig/         key material (generation, fingerprints, vault) and web.config editing
  nodes/                    the node-operations contract and its transports
  orchestration/            rotate, sync, rollback, restore, recover, audit
  cli/, lab/                command line, reporting and the local lab farm
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
