"""No key material leaves the vault and the web.configs: not on stdout, stderr, in ``--json``,
``--diff``, history, the journal, or any state file (and the vault holds it only encrypted)."""

from __future__ import annotations

import subprocess

from farmsync.webconfig.parser import inspect_config
from tests.cli.clikit import LocalFarm, output_of


def secrets_of(farm: LocalFarm, original: dict[str, bytes]) -> set[str]:
    """Every key hex the farm has held: the vault's keys and the nodes' keys before farmsync."""
    found: set[str] = set()
    for entry in farm.vault().entries():
        found |= {entry.key.validation_key, entry.key.decryption_key}
    for host, content in original.items():
        located = inspect_config(content, host).root_key
        assert located is not None
        found |= {located.key.validation_key, located.key.decryption_key}
    return found


def spellings(secret: str) -> list[bytes]:
    return [secret.upper().encode(), secret.lower().encode()]


def test_no_key_material_in_any_output_or_state_file(local_farm: LocalFarm) -> None:
    runs: list[subprocess.CompletedProcess[str]] = []
    for args in (
        ("rotate", "--diff"),
        ("rotate", "--json", "--diff"),
        ("rotate", "--check", "--diff"),
        ("history",),
        ("history", "--json"),
    ):
        result = local_farm.run(*args)
        assert result.returncode == 0, output_of(result)
        runs.append(result)
    assert "masked" in runs[0].stdout and '"diff": "' in runs[1].stdout  # diffs were shown

    secrets = secrets_of(local_farm, local_farm.originals)
    assert len(secrets) == 2 * (2 + len(local_farm.hosts))  # 2 rotations + original keys
    outputs = {
        f"{' '.join(r.args[3:5])} {stream}": text
        for r in runs
        for stream, text in (("stdout", r.stdout), ("stderr", r.stderr))
    }
    state_files = {str(p): p.read_bytes() for p in local_farm.state_root.rglob("*") if p.is_file()}
    vault = local_farm.farm_dir / "vault.fsv"
    journal = local_farm.farm_dir / "journal.jsonl"
    assert str(vault) in state_files and str(journal) in state_files
    assert b'"run_id"' in state_files[str(journal)]  # the journal did record the runs

    for secret in secrets:
        for name, text in outputs.items():
            assert secret.upper() not in text.upper(), f"key material in {name}"
        for name, data in state_files.items():
            for spelling in spellings(secret):
                assert spelling not in data, f"key material in {name}"
    assert b"validationKey" not in state_files[str(vault)]
