"""Static checks of scripts/audit.ps1 beyond the shared ones (tests/nodes/test_ps1_syntax.py):
read-only by construction, no request value handed to a cmdlet, and the same constants as its
Python twin (nodes/agent_audit.py, nodes/auditread.py, webconfig/iis.py)."""

from __future__ import annotations

import re

from farmsync.nodes import auditread, psagent
from farmsync.webconfig import iis
from tests.nodes.test_ps1_syntax import FARMSYNC_FUNCTION, commands, syntax_errors

SCRIPT = psagent.resource_text("audit.ps1")


def constant(name: str) -> str:
    found = re.search(rf"^\${name} = (.+)$", SCRIPT, re.M)
    assert found, name
    return found.group(1).strip()


def test_the_assembled_script_parses() -> None:
    assert syntax_errors(psagent.load_script("audit")) == []


def test_only_farmsync_functions_are_called_no_cmdlet_sees_request_data() -> None:
    called = {name for name, _ in commands(SCRIPT)}
    assert called and all(FARMSYNC_FUNCTION.fullmatch(name) for name in called), called


def test_read_only_by_construction() -> None:
    for forbidden in (
        "WriteAll",
        "File]::Move",
        "File]::Replace",
        "File]::Delete",
        "CreateNew",
        "CreateSubKey",
        "SetValue",
        "DeleteValue",
        "PersistKeyInCsp",
        "Remove-Item",
        "Set-",
        "New-Item",
    ):
        assert forbidden not in SCRIPT, forbidden
    assert "UseExistingKey" in SCRIPT  # a missing key container is reported, never created
    assert "OpenSubKey($FarmsyncViewStateMacKey, $false)" in SCRIPT  # read access only
    assert "ExportCspBlob($false)" in SCRIPT  # the public key only
    assert "DtdProcessing]::Prohibit" in SCRIPT and "XmlResolver = $null" in SCRIPT


def test_same_constants_as_the_twin() -> None:
    assert constant("FarmsyncScanDepth") == str(auditread.SCAN_DEPTH)
    assert constant("FarmsyncScanLimit") == str(auditread.SCAN_LIMIT)
    assert constant("FarmsyncRedirectionConfig") == f"'{iis.REDIRECTION_CONFIG}'"
    assert constant("FarmsyncApplicationHostConfig") == f"'{iis.APPLICATION_HOST_CONFIG}'"
    assert constant("FarmsyncViewStateMacKey") == f"'{auditread.VIEWSTATE_MAC_KEY}'"
    names = re.findall(r"'([A-Za-z]+)'", constant("FarmsyncRsaContainers"))
    assert tuple(names) == auditread.RSA_CONTAINER_NAMES
    assert f"GetValue('{auditread.VIEWSTATE_MAC_VALUE}'" in SCRIPT
    assert "'.farmsync-'" in SCRIPT and auditread.FARMSYNC_MARK == ".farmsync-"
