"""The floor of the comparison: the least any Python SSH tool does for the job, run as its own
program like the three tools (``python bench/floor_job.py JOB.json``).

Per node, all at once (a thread each): paramiko connects (host key checked against the
known_hosts file, the client key only), opens SFTP, reads the web.config, writes it back with
the new key under a temporary name, ``posix-rename`` s it over the original and reads it back
to check. No backup, no second phase, no journal, no vault: farmsync's wall time over this
one says what its guarantees and its own code cost on top of what paramiko must spend.
The key comes in the environment (``BENCH_VKEY``, ``BENCH_DKEY``), never on a command line.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from typing import Any

import paramiko

PATTERN = re.compile(rb'validationKey="[0-9A-Fa-f]*" decryptionKey="[0-9A-Fa-f]*"')


def one_node(node: dict[str, Any], wanted: bytes, errors: list[str]) -> None:
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(node["known_hosts"])
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            node["host"],
            port=node["port"],
            username=node["user"],
            key_filename=node["key"],
            allow_agent=False,
            look_for_keys=False,
            timeout=60,
        )
        sftp = client.open_sftp()
        path = node["path"]
        with sftp.open(path, "rb") as handle:
            old = handle.read()
        new = PATTERN.sub(wanted, old, count=1)
        temp = path + ".floor.tmp"
        with sftp.open(temp, "wb") as handle:
            handle.write(new)
        sftp.posix_rename(temp, path)
        with sftp.open(path, "rb") as handle:
            if handle.read() != new:
                errors.append(f"{node['host']}:{node['port']}: read back differs")
    except Exception as exc:  # a bench program: name the node and the failure, go on
        errors.append(f"{node['host']}:{node['port']}: {type(exc).__name__}: {exc}")
    finally:
        client.close()


def main(job_path: str) -> int:
    with open(job_path, encoding="utf-8") as handle:
        nodes: list[dict[str, Any]] = json.load(handle)
    wanted = (
        f'validationKey="{os.environ["BENCH_VKEY"]}" decryptionKey="{os.environ["BENCH_DKEY"]}"'
    ).encode("ascii")
    errors: list[str] = []
    threads = [threading.Thread(target=one_node, args=(n, wanted, errors)) for n in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for line in errors:
        print(line, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
