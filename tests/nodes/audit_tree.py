"""Node trees for the audit op's tests: a POSIX node's files, and a Windows node as the Python
twin of the agent sees it on this machine (``%windir%`` and ``%SystemDrive%`` pointing into
the test's directory, IIS's files from the applicationHost corpus, and the registry and RSA
answers in the facts file the twin reads, FARMSYNC_AGENT_WINDOWS_FACTS)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from farmsync.nodes.agent_audit import FACTS_ENV

CORPUS = Path(__file__).resolve().parents[1] / "webconfig" / "iis_corpus"
KEY = (
    '<machineKey validationKey="{v}" decryptionKey="{d}" validation="HMACSHA256" '
    'decryption="AES" />'
)
V = "5EC2E7" * 20 + "ABCD"  # recognisable: must never leave the node's answer as text
D = "D15C" * 16


def web_config(body: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?>\n<configuration>\n<system.web>\n{body}\n</system.web>\n'
        "</configuration>\n"
    ).encode()


@dataclass
class PosixTree:
    root_config: Path
    machine_config: Path
    app_config: Path
    sub_config: Path
    deep_config: Path  # below the scan depth: not reported

    @property
    def request_paths(self) -> tuple[str, ...]:
        return (str(self.root_config), str(self.machine_config), str(self.app_config))


def posix_tree(base: Path) -> PosixTree:
    etc = base / "etc" / "mono" / "4.5"
    etc.mkdir(parents=True)
    root = etc / "web.config"
    root.write_bytes(web_config(KEY.format(v=V, d=D)))
    (etc / "machine.config").write_bytes(web_config())
    (etc / "web.config.farmsync-r1.bak").write_bytes(web_config())
    (etc / "web.config.farmsync-r2.new").write_bytes(web_config())
    (etc / "unrelated.txt").write_bytes(b"x")
    app = base / "www" / "app"
    (app / "sub").mkdir(parents=True)
    (app / "web.config").write_bytes(web_config())
    sub = app / "sub" / "web.config"
    sub.write_bytes(web_config(KEY.format(v=V, d=D)))
    deep = app / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (deep / "web.config").write_bytes(web_config())
    return PosixTree(root, etc / "machine.config", app / "web.config", sub, deep / "web.config")


@dataclass
class WindowsTree:
    windir: Path
    system_drive: Path
    facts: Path

    def env(self) -> dict[str, str]:
        return {
            "windir": str(self.windir),
            "SystemDrive": str(self.system_drive),
            FACTS_ENV: str(self.facts),
        }


RSA_PUBLIC = {"iisConfigurationKey": b"public-blob-1", "iisWasKey": None}


def windows_tree(base: Path, *, registry_mac: int | None = 0) -> WindowsTree:
    """%windir% with IIS's config and .NET's CONFIG folders; %SystemDrive% with the sites of
    the corpus's farm file (its D:\\ paths moved under %SystemDrive%\\D)."""
    windir, drive = base / "Windows", base / "C"
    inetsrv = windir / "System32" / "inetsrv" / "config"
    inetsrv.mkdir(parents=True)
    (inetsrv / "redirection.config").write_bytes(
        (CORPUS / "05-empty.redirection.config").read_bytes()
    )
    host = (CORPUS / "02-farm.applicationHost.config").read_bytes()
    (inetsrv / "applicationHost.config").write_bytes(host.replace(b"D:\\", b"%SystemDrive%\\D\\"))
    for folder in ("Framework64", "Framework"):
        config = windir / "Microsoft.NET" / folder / "v4.0.30319" / "CONFIG"
        config.mkdir(parents=True)
        (config / "web.config").write_bytes(web_config(KEY.format(v=V, d=D)))
        (config / "machine.config").write_bytes(web_config())
    for site in (
        "inetpub/wwwroot",
        "D/sites/shop",
        "D/sites/shop-admin/x",
        "D/sites/api",
        "legacy",
        "D/shared/images",
    ):
        (drive / site).mkdir(parents=True, exist_ok=True)
    (drive / "inetpub" / "wwwroot" / "web.config").write_bytes(web_config())
    (drive / "D" / "sites" / "shop" / "web.config").write_bytes(
        web_config(KEY.format(v="AB" * 64, d="CD" * 32))
    )
    (drive / "D" / "sites" / "shop-admin" / "x" / "web.config").write_bytes(
        web_config(KEY.format(v=V, d=D))
    )  # allowSubDirConfig="false" above it
    (drive / "D" / "shared" / "images" / "web.config").write_bytes(
        web_config(KEY.format(v=V, d=D))
    )  # a virtual directory, not an application
    facts = base / "windows-facts.json"
    facts.write_text(
        json.dumps(
            {
                "registry": {"64": registry_mac, "32": None},
                "rsa": {
                    name: base64.b64encode(blob).decode() if blob is not None else None
                    for name, blob in RSA_PUBLIC.items()
                },
            }
        )
    )
    return WindowsTree(windir, drive, facts)
