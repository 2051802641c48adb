"""The farm marker: which controller's vault wrote the key a node holds, and when.

Every file a run changes carries one XML comment, written by the same two-phase commit as the
key (it is part of the staged bytes), backed up and rolled back with them::

    <!-- farmsync-marker: {"farm": "lab", "farm_id": "...", "generation": 3, ...} -->

It holds the farm's id and name, a generation number that only grows, the fingerprint of the
key written, the run id and the id and place of the vault that wrote it; never a secret.

Why a comment and not a sidecar file: IIS Manager, appcmd and System.Configuration edit a
root web.config by rewriting the section they change and copying the rest of the file, so a
comment outside every section (just before ``<configuration>``) survives their edits; and
being inside the file it moves atomically with the key, with no extra file for the node
protocol, the cleanup patterns or the audit to know about. A reinstall that replaces the
whole file drops it, which reads as "not managed yet", the truth. A key edited by hand or
by IIS Manager leaves the marker's fingerprint different from the file's key, which is
reported as such.

A controller compares the markers it reads with its own vault before it changes anything:
a marker from another vault, or with a higher generation than its vault has reached, means
the vault is behind the farm and would move it backwards (:func:`check_farm`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from farmsync.errors import ConfigFileError, ExitCode, FarmsyncError
from farmsync.orchestration.survey import FileCondition, NodeReport
from farmsync.webconfig.parser import decode_config, parse_config

MARKER_VERSION = 1
_COMMENT = re.compile(r"<!-- farmsync-marker: (\{[^<>]*?\}) -->")


class FarmBehindError(FarmsyncError):
    """This controller's vault is behind the farm: changing keys would move it backwards."""

    exit_code = ExitCode.CANNOT_START


@dataclass(frozen=True)
class Marker:
    farm: str  # the farm's name when this was written
    farm_id: str  # the farm's identity, kept across renames and takeovers
    generation: int  # grows by one with every run that changes the farm's key files
    fingerprint: str  # the key written with this marker
    run_id: str
    vault_id: str  # the vault that wrote it
    vault: str  # where that vault lives: "controller:/path/to/vault.fsv"

    def comment(self) -> str:
        doc = {"v": MARKER_VERSION, **asdict(self)}
        text = json.dumps(doc, sort_keys=True, ensure_ascii=True, separators=(", ", ": "))
        # "--" may not appear inside an XML comment; JSON's \u escape keeps the value.
        safe = text.replace("--", "-\\u002d").replace("<", "\\u003c").replace(">", "\\u003e")
        return f"<!-- farmsync-marker: {safe} -->"


def read_marker(content: bytes, source: str) -> Marker | None:
    """The marker in a web.config's bytes; None when there is none or it is unreadable."""
    try:
        text = parse_config(content, source).decoded.text
    except ConfigFileError:
        return None
    return _marker_in(text)


def _marker_in(text: str) -> Marker | None:
    found = _COMMENT.search(text)
    if found is None:
        return None
    try:
        doc = json.loads(found.group(1))
        return Marker(
            farm=str(doc["farm"]),
            farm_id=str(doc["farm_id"]),
            generation=int(doc["generation"]),
            fingerprint=str(doc["fingerprint"]),
            run_id=str(doc["run_id"]),
            vault_id=str(doc["vault_id"]),
            vault=str(doc.get("vault", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None


def with_marker(content: bytes, marker: Marker, source: str) -> bytes:
    """``content`` with its marker replaced by (or, the first time, preceded by) ``marker``.

    The comment goes on its own line just before ``<configuration>``, in the file's encoding
    and newline style; nothing else changes.
    """
    parsed = parse_config(content, source)
    decoded = parsed.decoded
    text = decoded.text
    found = _COMMENT.search(text)
    if found is not None:
        new_text = text[: found.start()] + marker.comment() + text[found.end() :]
    else:
        at = parsed.root.start
        new_text = text[:at] + marker.comment() + decoded.newline + text[at:]
    out = decoded.bom + new_text.encode(decoded.encoding, "xmlcharrefreplace")
    parse_config(out, source)  # still well-formed: the comment cannot have broken it
    return out


_COMMENT_LINE = re.compile(rb"<!-- farmsync-marker: \{[^<>]*?\} -->(?:\r\n|\n|\r)?")


def without_marker(content: bytes) -> bytes:
    """UTF-8 ``content`` with its marker line taken out (to compare a file with its past)."""
    return _COMMENT_LINE.sub(b"", content, count=1)


@dataclass(frozen=True)
class FarmMarkers:
    """What the markers on every node say, seen from one controller's vault."""

    markers: dict[str, Marker]  # "host:path" -> marker, files that carry one

    @property
    def newest(self) -> Marker | None:
        return max(self.markers.values(), key=lambda m: m.generation, default=None)

    @property
    def generation(self) -> int:
        newest = self.newest
        return newest.generation if newest is not None else 0

    @property
    def farm_id(self) -> str | None:
        newest = self.newest
        return newest.farm_id if newest is not None else None


def collect(markers: Iterable[tuple[str, Marker | None]]) -> FarmMarkers:
    return FarmMarkers({where: m for where, m in markers if m is not None})


def check_farm(
    found: FarmMarkers,
    *,
    farm: str,
    vault_id: str,
    vault_generation: int,
    vault_path: str,
    command: str,
) -> None:
    """Refuse (exit 3) when the farm's key files were written by another vault, or by this
    one at a generation it has since lost (restored from an old backup)."""
    newest = found.newest
    if newest is None:
        return
    foreign = sorted({m.vault_id for m in found.markers.values()} - {vault_id})
    if not foreign and newest.generation <= vault_generation:
        return
    renamed = ""
    if newest.farm != farm:
        renamed = (
            f" The nodes were last managed as farm {newest.farm!r}, this inventory names it "
            f"{farm!r}: a farm named after its inventory file changes name when the file is "
            f"renamed; set farmsync_farm: {newest.farm} to keep its state."
        )
    if foreign and newest.vault.endswith(":" + vault_path):
        what = (
            f"the farm's current key {newest.fingerprint} (generation {newest.generation}, "
            f"run {newest.run_id}) was written by vault {newest.vault_id}, which lived where "
            f"this vault ({vault_id}) is now, {vault_path}: the vault there was deleted or "
            "replaced by a new one"
        )
    elif foreign:
        what = (
            f"the farm's current key {newest.fingerprint} (generation {newest.generation}, "
            f"run {newest.run_id}) was written by another vault, {newest.vault_id} at "
            f"{newest.vault or 'an unknown place'}, not by this one ({vault_id} at {vault_path})"
        )
    else:
        what = (
            f"this vault ({vault_path}) is behind the farm: the farm's current key "
            f"{newest.fingerprint} is generation {newest.generation} (run {newest.run_id}), "
            f"the vault knows generations up to {vault_generation} (restored from an old copy?)"
        )
    raise FarmBehindError(
        f"refusing to {command}: {what}; changing keys from here would move the farm "
        f"backwards. {_point_at(newest)}, or take the farm over on purpose with "
        f"`farmsync rotate --adopt` (a fresh key).{renamed}"
    )


def _point_at(newest: Marker) -> str:
    """The option (and value, when the marker says where its vault lives) to use instead."""
    controller, _, path = newest.vault.partition(":")
    parts = path.rsplit("/", 2)  # <state root>/<farm>/vault.fsv
    if len(parts) == 3 and parts[2] == "vault.fsv" and parts[0]:
        return (
            f"Use that vault: run on {controller} with --state-dir {parts[0]} "
            f"(or FARMSYNC_STATE_DIR={parts[0]})"
        )
    return "Point --state-dir (or FARMSYNC_STATE_DIR) at the state directory of that vault"


def markers_of(reports: Mapping[str, NodeReport]) -> FarmMarkers:
    """Every marker in a survey's reports."""
    pairs: list[tuple[str, Marker | None]] = []
    for host, report in reports.items():
        for file in report.files:
            content = file.content
            if content is None:
                continue
            source = f"{host}:{file.path}"
            if file.condition in _PARSED:
                # The survey parsed these bytes already: decoding them again is enough.
                pairs.append((source, _marker_in(decode_config(content, source).text)))
            else:
                pairs.append((source, read_marker(content, source)))
    return collect(pairs)


_PARSED = (FileCondition.OK, FileCondition.ENCRYPTED)
