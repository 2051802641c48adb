"""What each managed file of an unfinished run holds, judged against the journal.

Recovery acts only on what it can prove: the paths the current inventory manages for a
host (:func:`managed_paths`), and a backup whose hash is the original's hash the journal
recorded (:attr:`LiveFile.backup_proven`). Everything else is described, never acted on.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from farmsync.inventory.model import Inventory
from farmsync.nodes.contract import (
    FileState,
    FileStatus,
    NodeOperations,
    backup_path,
    raise_for_state,
)
from farmsync.orchestration.journal import RunState
from farmsync.orchestration.pool import TaskResult, run_each
from farmsync.orchestration.recorder import FileHashes
from farmsync.orchestration.survey import inspect_file


def managed_paths(state: RunState, inventory: Inventory) -> dict[str, list[str]]:
    """The run's paths that the current inventory manages, per host still in it."""
    managed: dict[str, list[str]] = {}
    for host, paths in state.hosts.items():
        entry = inventory.hosts.get(host)
        if entry is not None:
            managed[host] = [p for p in paths if p in entry.root_configs]
    return managed


def unmanaged_notes(state: RunState, inventory: Inventory) -> list[str]:
    notes: list[str] = []
    for host, paths in state.hosts.items():
        entry = inventory.hosts.get(host)
        if entry is None:
            notes.append(
                f"run {state.run_id}: {host} is no longer in the inventory: its files were "
                "left as they are"
            )
            continue
        for path in paths:
            if path not in entry.root_configs:
                notes.append(
                    f"run {state.run_id} names {host}:{path}, which the inventory does not "
                    "manage: not touched"
                )
    return notes


@dataclass
class LiveFile:
    """One managed file of the run as recovery found it, judged by hash against the journal."""

    host: str
    run_id: str
    hashes: FileHashes
    old_fp: str | None  # the key it held when the run read it
    live: FileState
    backup: FileState | None = None  # read for files on the new content
    accepted: bool = False

    @property
    def path(self) -> str:
        return self.hashes.path

    @property
    def original(self) -> bool:
        return bool(self.hashes.old_sha256) and self.live.sha256 == self.hashes.old_sha256

    @property
    def new(self) -> bool:
        return bool(self.hashes.new_sha256) and self.live.sha256 == self.hashes.new_sha256

    @property
    def backup_proven(self) -> bool:
        """The run's backup holds exactly the original the journal recorded."""
        return (
            self.backup is not None
            and bool(self.hashes.old_sha256)
            and self.backup.sha256 == self.hashes.old_sha256
        )

    @property
    def key_fp(self) -> str | None:
        """The fingerprint of the key the file holds now (None: missing or unreadable)."""
        return _key_fp(self.host, self.path, self.live)

    def describe(self, *, backup: bool = True) -> str:
        """Which content the file holds, and its backup, for an operator deciding what to do."""
        if self.original:
            what = "the original"
        elif self.new:
            what = "the run's new content"
        elif self.live.status is FileStatus.MISSING:
            what = "nothing: the file is missing"
        else:
            what = "unknown content"
        text = f"{self.host} {self.path}: holds {what}{_key_text(self.key_fp, self.live)}"
        if not backup or self.backup is None:
            return text
        bpath = backup_path(self.path, self.run_id)
        if self.backup.status is FileStatus.MISSING:
            return text + f"; its backup {bpath} is missing"
        shown = _key_text(_key_fp(self.host, bpath, self.backup), self.backup)
        if self.backup_proven:
            return text + f"; its backup {bpath} is the original{shown}"
        original = f"sha256 {_short(self.hashes.old_sha256)}"
        if self.old_fp:
            original += f", key {self.old_fp}"
        return (
            text
            + f"; its backup {bpath} holds unknown content{shown}, not the original ({original})"
        )


def _key_fp(host: str, path: str, state: FileState) -> str | None:
    if state.content is None:
        return None
    return inspect_file(host, path, state.content).fingerprint


def _key_text(fingerprint: str | None, state: FileState) -> str:
    if state.status is FileStatus.MISSING:
        return ""
    if fingerprint is not None:
        return f" (key {fingerprint})"
    return f" (sha256 {_short(state.sha256)}, no readable key)"


def _short(digest: str | None) -> str:
    return f"{digest[:16]}…" if digest else "none"


def read_live_files(
    state: RunState,
    managed: Mapping[str, list[str]],
    nodes: Mapping[str, NodeOperations],
    accept: Collection[str],
    forks: int,
) -> dict[str, TaskResult[list[LiveFile]]]:
    """Read every managed file, and the backup of each file on the new content; per host, its
    files or the error that kept them from being read."""

    def work(name: str, node: NodeOperations) -> list[LiveFile]:
        paths = managed[name]
        live = node.read(paths)
        files = [
            LiveFile(
                name,
                state.run_id,
                file_hashes(state, name, p),
                state.file(name, p).old_fp or state.previous_fp,
                live[p],
                accepted=name in accept,
            )
            for p in paths
        ]
        for f in files:
            raise_for_state(name, f.live, "recover")
        on_new = [f for f in files if f.new]
        if on_new:
            backups = node.read([backup_path(f.path, state.run_id) for f in on_new])
            for f in on_new:
                f.backup = backups[backup_path(f.path, state.run_id)]
        return files

    return run_each(((n, nodes[n]) for n in managed), work, forks)


def file_hashes(state: RunState, host: str, path: str) -> FileHashes:
    progress = state.file(host, path)
    return FileHashes(path, progress.old_sha256 or "", progress.new_sha256 or "")


def unproven_report(state: RunState, files: Mapping[str, list[LiveFile]]) -> tuple[str, list[str]]:
    """Why the run cannot be rolled back, then each of its files, then the ways out."""
    everything = [f for fs in files.values() for f in fs]
    stuck = sorted({f.host for f in everything if f.new and not f.accepted and not f.backup_proven})
    return (
        f"run {state.run_id} cannot be rolled back: "
        + ", ".join(stuck)
        + " hold(s) the run's new content and no backup proven to be the original; "
        "nothing was changed, the run stays open",
        [
            *(f.describe() for f in everything),
            "to finish: put the original back on those files and run `farmsync recover`, "
            "or take their current files as the run's outcome with `farmsync recover "
            + " ".join(f"--accept-current {h}" for h in stuck)
            + "` (then `farmsync sync` or `farmsync rotate` puts one key everywhere)",
        ],
    )
