"""A run's result: hosts are found by name, in the order they were first named."""

from __future__ import annotations

import json

from farmsync.orchestration.journal import RunKind
from farmsync.orchestration.result import HostResult, HostStatus, Outcome, RunResult


def test_a_host_is_added_once_and_found_again_by_name() -> None:
    result = RunResult("run-1", RunKind.ROTATE, "farm", Outcome.UNCHANGED)
    names = [f"web{i}" for i in range(50)]
    first = {name: result.host(name) for name in names}
    result.host("web7").status = HostStatus.FAILED

    assert [h.host for h in result.hosts] == names  # the order they were first named
    assert all(result.host(name) is first[name] for name in names)
    assert result.hosts[7].status is HostStatus.FAILED


def test_hosts_given_or_added_outside_host_are_found_too() -> None:
    given = HostResult("web1", HostStatus.CHANGED)
    result = RunResult("run-1", RunKind.ROTATE, "farm", Outcome.CHANGED, hosts=[given])
    assert result.host("web1") is given
    added = HostResult("web2", HostStatus.ROLLED_BACK)
    result.hosts.append(added)
    assert result.host("web2") is added
    assert [h.host for h in result.hosts] == ["web1", "web2"]


def test_the_json_shape_holds_only_the_results_fields() -> None:
    result = RunResult("run-1", RunKind.ROTATE, "farm", Outcome.UNCHANGED)
    result.host("web1")
    data = result.to_dict()
    assert not [k for k in data if k.startswith("_")]
    assert [h["host"] for h in json.loads(json.dumps(data))["hosts"]] == ["web1"]
