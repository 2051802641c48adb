"""The playbooks as files: Ansible parses each one, ansible-lint passes them on its production
profile, each says in its header what it does, and farmsync is only ever run as an argv."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from farmsync.errors import ExitCode
from farmsync.inventory.variables import FARMSYNC_VARIABLES
from farmsync.keys.generate import generate_key
from tests.playbooks.playbook_runner import PLAYBOOK_NAMES, PLAYBOOKS, ROOT, Ansible, key_material

ROLE = PLAYBOOKS / "roles" / "farmsync"


@pytest.fixture(scope="module")
def ansible(tmp_path_factory: pytest.TempPathFactory) -> Ansible:
    return Ansible(tmp_path_factory.mktemp("ansible"))


@pytest.mark.parametrize("name", PLAYBOOK_NAMES)
def test_ansible_parses_the_playbook(ansible: Ansible, name: str) -> None:
    done = ansible.playbook(name, ROOT / "inventory" / "example.yml", None, "--syntax-check")
    assert done.returncode == 0, done.output
    assert f"playbook: {PLAYBOOKS / name}" in done.stdout


def test_a_broken_playbook_fails_the_syntax_check(ansible: Ansible, tmp_path: Path) -> None:
    # The check above can fail: a task with two modules is refused.
    broken = PLAYBOOKS / "rotate.yml"
    copy = tmp_path / "broken.yml"
    copy.write_text(
        broken.read_text().replace(
            "      changed_when: false\n",
            "      ansible.builtin.debug: {msg: x}\n      changed_when: false\n",
            1,
        )
    )
    done = ansible.playbook(str(copy), ROOT / "inventory" / "example.yml", None, "--syntax-check")
    assert done.returncode != 0
    assert "conflicting action statements" in done.output


def test_ansible_lint_passes_every_playbook_on_the_production_profile(ansible: Ansible) -> None:
    done = ansible.lint(PLAYBOOKS)  # the playbooks, the role, its tasks and defaults
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr


def test_ansible_lint_refuses_a_task_the_production_profile_forbids(
    ansible: Ansible, tmp_path: Path
) -> None:
    copy = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS, copy)
    rotate = copy / "rotate.yml"
    rotate.write_text(rotate.read_text() + "    - command: /bin/true\n")  # no name, no FQCN

    done = ansible.lint(copy, cwd=copy)

    assert done.returncode != 0
    assert "fqcn[action-core]" in done.stdout + done.stderr


@pytest.mark.parametrize("name", PLAYBOOK_NAMES)
def test_every_playbook_says_what_it_does_for_whom_with_what_and_how(name: str) -> None:
    header = []
    for line in (PLAYBOOKS / name).read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert header and header[0].startswith(f"# {name}: ")
    for section in ("What it does", "Hosts:", "Variables", "Example:"):
        assert section in text, f"{name}: no {section!r} in its header"
    assert "ansible-playbook" in text.split("Example:")[1]


def test_the_readme_lists_every_playbook() -> None:
    readme = (PLAYBOOKS / "README.md").read_text()
    for name in PLAYBOOK_NAMES:
        assert f"`{name}`" in readme
    # The one playbook no test runs says so.
    assert "`prepare-windows-nodes.yml` is only syntax-checked and linted" in readme


def _tasks(node: Any) -> Iterator[dict[str, Any]]:
    """Every task of a play list or task list, blocks included."""
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        if "hosts" in node:  # a play
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                yield from _tasks(node.get(key, []))
            return
        yield node
        for key in ("block", "rescue", "always"):
            yield from _tasks(node.get(key, []))


def _yaml_files() -> list[Path]:
    return [PLAYBOOKS / n for n in PLAYBOOK_NAMES] + sorted((ROLE / "tasks").glob("*.yml"))


def test_commands_are_argv_lists_and_no_task_uses_a_shell() -> None:
    commands = 0
    for path in _yaml_files():
        for task in _tasks(yaml.safe_load(path.read_text())):
            modules = set(task) & {
                "shell",
                "ansible.builtin.shell",
                "raw",
                "ansible.builtin.raw",
                "script",
                "ansible.builtin.script",
                "ansible.windows.win_shell",
                "ansible.windows.win_command",
                "command",
            }
            assert not modules, f"{path.name}: {task.get('name')} uses {modules}"
            if "ansible.builtin.command" in task:
                commands += 1
                args = task["ansible.builtin.command"]
                assert isinstance(args, dict) and set(args) == {"argv"}, (
                    f"{path.name}: {task.get('name')} is not an argv command"
                )
    assert commands >= 4  # farmsync's run, doctor --help, systemd-analyze (twice)


def test_the_exit_code_meanings_match_farmsyncs_exit_codes() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    meanings = defaults["farmsync_exit_meanings"]
    codes = {v for k, v in vars(ExitCode).items() if k.isupper() and v != ExitCode.OK}
    assert codes <= set(meanings) <= codes | {130}  # 130: interrupted (SIGINT)


def test_secret_tasks_are_no_log() -> None:
    tasks = {
        t.get("name"): t
        for t in _tasks(yaml.safe_load((PLAYBOOKS / "install-controller.yml").read_text()))
    }
    for name in ("Write the secrets environment file", "Write the vault key file"):
        assert tasks[name]["no_log"] is True and tasks[name]["diff"] is False
    emergency = {
        t.get("name"): t
        for t in _tasks(yaml.safe_load((PLAYBOOKS / "emergency-rotate.yml").read_text()))
    }
    assert emergency["Post the summary to the webhook"]["no_log"] is True


def test_the_key_scan_finds_a_key_and_a_named_secret() -> None:
    key = generate_key()
    text = f'validationKey="{key.validation_key}" decryptionKey="{key.decryption_key}"'
    assert len(key_material(text)) == 2
    assert key_material("fingerprint mk-0123456789abcdef, run 20261127T101010Z-abc123") == []
    assert key_material("the pass is Hunter2!", ["hunter2!"]) == ["secret hunt…"]


def _documented_variables(text: str) -> set[str]:
    return set(re.findall(r"\bfarmsync_[a-z0-9_]*[a-z0-9]", text))


def test_documented_variables_exist_and_never_pose_as_inventory_variables() -> None:
    defaults = set(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()))
    # A playbook default with an inventory variable's name would be read from the inventory.
    assert not defaults & set(FARMSYNC_VARIABLES)
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## With Ansible", 1)[1].split("\n## ", 1)[0]
    docs = [section, (PLAYBOOKS / "README.md").read_text()]
    for name in PLAYBOOK_NAMES:
        lines = (PLAYBOOKS / name).read_text().splitlines()
        docs.append("\n".join(line for line in lines if line.startswith("#")))
    unknown = set().union(*map(_documented_variables, docs)) - defaults - set(FARMSYNC_VARIABLES)
    assert not unknown, f"documented but defined nowhere: {sorted(unknown)}"


def test_the_readme_covers_ansible_awx_and_two_load_balancers() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## With Ansible", 1)[1].split("\n## ", 1)[0]
    for name in (
        "rotate.yml",
        "audit-nightly.yml",
        "rotate-rolling.yml",
        "emergency-rotate.yml",
        "install-controller.yml",
        "prepare-windows-nodes.yml",
    ):
        assert f"`{name}`" in section
    for word in ("AWX", "job template", "HAProxy", "runtime", "F5", "farmsync_lb_drain_url"):
        assert word in section


def test_a_farmsync_that_cannot_be_started_is_named_not_taken_for_bad_input(
    ansible: Ansible, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-farmsync"
    done = ansible.playbook(
        "rotate.yml", ROOT / "inventory" / "example.yml", {"farmsync_bin": str(missing)}
    )
    assert done.returncode != 0
    assert f"could not run {missing}" in done.stdout
    assert "set farmsync_bin to the farmsync command" in done.stdout
    assert "bad input" not in done.stdout
