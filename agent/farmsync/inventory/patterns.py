"""Ansible host patterns for --limit: pick hosts by name, group, wildcard or regex.

Syntax as in Ansible: ``all`` or ``*``; host and group names; wildcards (``web*``); regexes
(``~web\\d+``, matched from the start of the name); subscripts (``webservers[0]``,
``webservers[0:2]``, inclusive); terms joined by ``:`` or ``,``; ``&term`` intersects,
``!term`` excludes. Evaluation order is Ansible's: all unions first, then intersections, then
exclusions, whatever order they are written in.

Stricter than Ansible on two points. A term that matches nothing is an error rather than a
warning, because a mistyped exclusion would otherwise silently include the host it meant to
spare. And a ``~`` regex gets bounded work: at most 256 characters, matched in a child
process limited to 2 s of CPU. Python's backtracking engine can take exponential time
(``~(a|aa)+$b`` against a 40-character name took 24 s), and no rule about the pattern's
shape (nested quantifiers, alternation under a star, ``a*a*a*...``) catches every slow case,
so the budget is enforced by the kernel (RLIMIT_CPU), which works the same from any thread
and cannot be confused by the machine's load; the child costs ~20 ms, paid only by ``~``.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
import signal
import subprocess
import sys
from collections.abc import Sequence

from farmsync.errors import InputError
from farmsync.inventory.model import Host, Inventory

SOURCE = "--limit"

_TERM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_IPV6 = re.compile(r"^[0-9A-Fa-f]*(?::[0-9A-Fa-f]*){2,}$")
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)[:-]([0-9]*))\]$")
_GLOB_CHARS = (".", "?", "*", "[")
REGEX_MAX_CHARS = 256
REGEX_CPU_SECONDS = 2
# Runs with -I -S: no site, no environment, nothing imported but what it names.
_REGEX_CHILD = """
import json, re, resource, sys
_, hard = resource.getrlimit(resource.RLIMIT_CPU)
limit = {cpu}
if hard != resource.RLIM_INFINITY:
    limit = min(limit, max(hard - 1, 1))
    hard = min(hard, limit + 1)
else:
    hard = limit + 1
resource.setrlimit(resource.RLIMIT_CPU, (limit, hard))
request = json.load(sys.stdin)
pattern = re.compile(request["pattern"])
json.dump([name for name in request["names"] if pattern.match(name)], sys.stdout)
"""


def split_pattern(pattern: str) -> list[str]:
    """The terms of a pattern: ``web:&db:!web03`` -> ``["web", "&db", "!web03"]``."""
    if "," in pattern:
        parts = pattern.split(",")
    elif _IPV6.match(pattern.strip()):
        parts = [pattern]  # a bare IPv6 address is one host name, not a list of terms
    else:
        parts = _TERM.findall(pattern)
        if not re.fullmatch(r"[\s:]*", _TERM.sub("", pattern)):
            # Something the term syntax cannot hold, such as an unclosed '[': refuse rather
            # than silently match a shorter term.
            raise InputError(
                f"cannot read host pattern {pattern!r} (unbalanced brackets?)", source=SOURCE
            )
    return [part.strip() for part in parts if part.strip()]


def _matcher(expression: str) -> re.Pattern[str]:
    try:
        if expression.startswith("~"):
            return re.compile(expression[1:])
        return re.compile(fnmatch.translate(expression))
    except re.error as exc:
        raise InputError(f"invalid pattern {expression!r}: {exc}", source=SOURCE) from None


def _regex_matches(expression: str, names: Sequence[str]) -> set[str]:
    """The names a ``~`` regex matches, found by a child process with a CPU budget."""
    if len(expression) - 1 > REGEX_MAX_CHARS:
        raise InputError(
            f"regex host pattern is {len(expression) - 1} characters long; "
            f"the limit is {REGEX_MAX_CHARS}",
            source=SOURCE,
        )
    _matcher(expression)  # a syntax error is reported here, with the re module's words
    over_budget = InputError(
        f"regex host pattern {expression!r} needs more than {REGEX_CPU_SECONDS} s of CPU "
        "to match the inventory's names (it backtracks too much, as nested or ambiguous "
        "repetitions like '(a|aa)+' do); simplify it or use a wildcard",
        source=SOURCE,
    )
    try:
        child = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _REGEX_CHILD.format(cpu=REGEX_CPU_SECONDS)],
            input=json.dumps({"pattern": expression[1:], "names": list(names)}),
            capture_output=True,
            text=True,
            timeout=60 * REGEX_CPU_SECONDS,  # a wall-clock backstop; the CPU limit comes first
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise over_budget from None
    except OSError as exc:
        raise InputError(
            f"cannot match regex host pattern {expression!r}: no Python to run the matcher "
            f"({exc.strerror or exc})",
            source=SOURCE,
        ) from None
    if child.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise over_budget
    try:
        found = json.loads(child.stdout) if child.returncode == 0 else None
    except ValueError:
        found = None
    if not isinstance(found, list):
        raise InputError(
            f"cannot match regex host pattern {expression!r}: the matcher failed "
            f"(exit {child.returncode})",
            source=SOURCE,
        )
    return {name for name in found if isinstance(name, str)}


def _enumerate(inventory: Inventory, expression: str) -> list[str]:
    if expression.startswith("~"):
        hits = _regex_matches(expression, [*inventory.groups, *inventory.hosts])

        def is_match(name: str) -> bool:
            return name in hits
    else:
        matcher = _matcher(expression)

        def is_match(name: str) -> bool:
            return matcher.match(name) is not None

    found: dict[str, None] = {}
    groups = [name for name in inventory.groups if is_match(name)]
    for group in groups:
        found.update(dict.fromkeys(inventory.groups[group]))
    is_pattern = expression.startswith("~") or any(c in expression for c in _GLOB_CHARS)
    if not groups or is_pattern:
        found.update(dict.fromkeys(name for name in inventory.hosts if is_match(name)))
    return list(found)


def _match_term(inventory: Inventory, term: str) -> list[str]:
    subscript = None if term.startswith("~") else _SUBSCRIPT.match(term)
    if subscript is None:
        return _enumerate(inventory, term)
    base, index, start, end = subscript.groups()
    names = _enumerate(inventory, base)
    if index is not None:
        position = int(index)
        return [names[position]] if -len(names) <= position < len(names) else []
    if end == "":
        return names[int(start) :]
    return names[int(start) : int(end) + 1]


def _did_you_mean(inventory: Inventory, term: str) -> str:
    """' (did you mean web01?)' for a term close to a host or group name, else ''."""
    names = [*inventory.hosts, *(g for g in inventory.groups if g not in ("all", "ungrouped"))]
    close = difflib.get_close_matches(term.lstrip("~"), names, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def select_hosts(inventory: Inventory, pattern: str | None) -> list[Host]:
    """The hosts ``pattern`` selects, in inventory order; every host when ``pattern`` is None."""
    if pattern is None:
        return list(inventory.hosts.values())
    terms = split_pattern(pattern)
    if not terms:
        raise InputError("empty host pattern", source=SOURCE)
    unions = [t for t in terms if t[0] not in "&!"]
    intersections = [t[1:] for t in terms if t[0] == "&"]
    exclusions = [t[1:] for t in terms if t[0] == "!"]
    for term in (*intersections, *exclusions):
        if not term:
            raise InputError(f"incomplete term in host pattern {pattern!r}", source=SOURCE)

    def match(term: str) -> list[str]:
        names = _match_term(inventory, term)
        if not names:
            hint = _did_you_mean(inventory, term)
            raise InputError(
                f"{term!r} matches no host or group of the inventory{hint}", source=SOURCE
            )
        return names

    selected: dict[str, None] = {}
    for term in unions or ["all"]:
        selected.update(dict.fromkeys(match(term)))
    for term in intersections:
        keep = set(match(term))
        selected = {name: None for name in selected if name in keep}
    for term in exclusions:
        drop = set(match(term))
        selected = {name: None for name in selected if name not in drop}
    if not selected:
        raise InputError(f"host pattern {pattern!r} selects no host", source=SOURCE)
    return [host for name, host in inventory.hosts.items() if name in selected]
