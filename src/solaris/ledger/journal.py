"""The settlement journal: where a settlement goes when the database cannot take it.

A request the provider answered must be charged, and an answer whose charge is recorded nowhere
must not be given away (DESIGN §2.3). When a settle fails, its usage record is appended to a
file of this process's own (one JSON line, fsynced before the answer leaves) and replayed,
idempotently by request id, as soon as the database answers again.

- Each process writes its own file, `settlements-<deployment>-<id>.jsonl` in
  `SOLARIS_JOURNAL_DIR`, and holds an exclusive `flock` on it while it runs. A file nobody holds
  belongs to a process that died (kill -9, a crash, a power cut): the next process of the same
  deployment (the same database) to look adopts it, replays it, deletes it. Files of another
  deployment sharing the directory are never touched.
- The file only grows while entries wait; once every entry has been replayed it is truncated.
  Replaying an entry twice is harmless (the usage row's request id is unique), so a crash at
  any point leaves at worst entries that replay as "already settled".
- It is bounded: an append that would pass `bytes_max` is refused (`JournalFull`), and the
  caller then refuses the answer instead.
- A line cut short by a crash mid-write was never fsynced, so its answer never left: skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from solaris.ledger.ledger import UsageRecord
from solaris.metering.billing import ToolCharge

__all__ = ["Journal", "JournalFull", "Orphan"]

log = structlog.get_logger(__name__)

PREFIX = "settlements-"
SUFFIX = ".jsonl"
ORPHAN_FILES_MAX = 1_000  # adopted per scan; a scan every few seconds gets through any backlog


class JournalFull(OSError):
    """The journal reached its size limit: nothing more can be written to it."""


@dataclass(slots=True)
class Orphan:
    """A dead process's journal, adopted (its lock held) until every entry is replayed."""

    path: Path
    fd: int
    records: list[UsageRecord] = field(default_factory=list)


def encode(record: UsageRecord) -> bytes:
    return orjson.dumps(asdict(record)) + b"\n"


def decode(line: bytes) -> UsageRecord:
    fields: dict[str, Any] = orjson.loads(line)
    if fields.get("finished_at") is not None:
        fields["finished_at"] = datetime.fromisoformat(fields["finished_at"])
    fields["tool_charges"] = tuple(ToolCharge(**c) for c in fields.get("tool_charges") or ())
    return UsageRecord(**fields)


def read_records(fd: int, path: Path) -> list[UsageRecord]:
    """Every complete line of a journal file."""
    with os.fdopen(os.dup(fd), "rb") as stream:
        stream.seek(0)
        data = stream.read()
    lines = data.split(b"\n")
    if lines[-1]:
        log.warning("journal_torn_line_skipped", path=str(path), bytes=len(lines[-1]))
    records = []
    for line in lines[:-1]:
        try:
            records.append(decode(line))
        except (orjson.JSONDecodeError, TypeError, ValueError, AssertionError):
            log.error("journal_line_unreadable", path=str(path), line=line[:200].decode("latin-1"))
    return records


def _lock(fd: int) -> bool:
    """Take the file's exclusive lock without waiting; False when a live process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class Journal:
    """This process's journal file, plus the files of dead processes it adopts."""

    def __init__(self, directory: Path, bytes_max: int) -> None:
        assert bytes_max > 0
        self.directory = directory
        self.bytes_max = bytes_max
        self.prefix = PREFIX
        self.path = directory / "unopened"
        self.pending: dict[str, UsageRecord] = {}  # this process's entries, by request id
        self._fd: int | None = None
        self._size = 0

    def open(self, deployment: str) -> None:
        """Start this process's file, for the deployment (database) whose id is given."""
        assert deployment and deployment.isalnum(), deployment
        self.prefix = f"{PREFIX}{deployment}-"
        self.path = self.directory / f"{self.prefix}{uuid.uuid4().hex}{SUFFIX}"
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        assert _lock(fd), "a new journal file is nobody else's"
        self._fd = fd
        _sync_directory(self.directory)  # the file's name survives a power cut too

    def close(self) -> None:
        """Release the file; remove it when nothing waits in it (else the next start adopts it)."""
        if self._fd is None:
            return
        if not self.pending:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)  # closing releases the lock
        self._fd = None

    def append(self, record: UsageRecord) -> None:
        """Write one entry durably (blocking: call it off the event loop)."""
        assert self._fd is not None, "Journal.open() was not called"
        line = encode(record)
        if self._size + len(line) > self.bytes_max:
            raise JournalFull(f"the settlement journal is full ({self.bytes_max} bytes)")
        written = os.write(self._fd, line)
        os.fsync(self._fd)
        assert written == len(line), (written, len(line))
        self._size += written
        self.pending[record.request_id] = record

    def settled(self, request_id: str) -> None:
        """An entry reached the database; once none waits, the file starts afresh."""
        assert self._fd is not None
        self.pending.pop(request_id, None)
        if not self.pending and self._size:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self._size = 0

    def adopt(self) -> list[Orphan]:
        """The journals of processes that are gone: each locked, read, and held until `finish`."""
        orphans: list[Orphan] = []
        for path in sorted(self.directory.glob(f"{self.prefix}*{SUFFIX}"))[:ORPHAN_FILES_MAX]:
            if path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:  # another process adopted and finished it meanwhile
                continue
            if not _lock(fd) or not path.exists():
                os.close(fd)
                continue
            orphans.append(Orphan(path, fd, read_records(fd, path)))
        return orphans

    def finish(self, orphan: Orphan) -> None:
        """Every entry of an adopted journal is settled: delete it."""
        assert not orphan.records, "an adopted journal is deleted only once replayed"
        with contextlib.suppress(FileNotFoundError):
            orphan.path.unlink()
        _sync_directory(self.directory)
        os.close(orphan.fd)

    def release(self, orphan: Orphan) -> None:
        """Give an adopted journal back unfinished (shutdown): the next process adopts it."""
        os.close(orphan.fd)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
