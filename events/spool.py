"""A durable local spool: append-only JSONL segments that keep events until Kafka acknowledged them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from events.errors import TouchpathError

SEGMENT_SUFFIX = ".jsonl"
LOCK_NAME = "spool.lock"

# Per-record state, one byte per record of a segment.
PENDING = 0  # in the spool, not handed to the producer (never sent, or its delivery failed)
IN_FLIGHT = 1  # handed to the producer, acknowledgement outstanding
DONE = 2  # acknowledged by Kafka (or unreadable on replay): may leave the spool


class SpoolError(TouchpathError):
    """The spool directory cannot be used; the message names it and says what to do."""


@dataclass(frozen=True, slots=True)
class SpoolRef:
    """Where one record lives: its segment's sequence number and its line index in that segment."""

    segment: int
    index: int


class _Segment:
    __slots__ = ("done", "path", "pending", "seq", "states")

    def __init__(self, seq: int, path: Path, states: bytearray) -> None:
        self.seq = seq
        self.path = path
        self.states = states
        self.pending = states.count(PENDING)
        self.done = states.count(DONE)

    @property
    def complete(self) -> bool:
        return self.done == len(self.states)


def _complete_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    # A crash mid-append can leave a torn last line without its newline: it was never acknowledged
    # to anyone as spooled, so it is ignored.
    lines = data.split(b"\n")
    return lines[:-1]


class Spool:
    """Append-only JSONL segments in one directory, owned by one process at a time.

    Invariant: a record's file stays on disk until every record of its segment is DONE, i.e.
    acknowledged by Kafka; records found on disk at open are PENDING and get resent (downstream
    dedupes by event_id). append() writes the line to the OS before it returns, so it survives a
    crash of the process; fsync makes it survive a crash of the machine and happens at most
    `fsync_interval_s` after an append (0: on every append), on roll, sync() and close().
    """

    def __init__(
        self, directory: Path, *, segment_records: int = 10_000, fsync_interval_s: float = 0.1
    ) -> None:
        if segment_records < 1:
            msg = f"segment_records must be at least 1, got {segment_records}"
            raise SpoolError(msg)
        self.directory = directory
        self.segment_records = segment_records
        self.fsync_interval_s = fsync_interval_s
        self._lock = threading.Lock()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            msg = f"cannot use spool directory {directory}: {error.strerror}; pass a writable spool_dir"
            raise SpoolError(msg) from error
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(self._lock_fd)
            msg = (
                f"spool directory {directory} is in use by another process; give each process its "
                "own spool_dir"
            )
            raise SpoolError(msg) from error
        self._segments: dict[int, _Segment] = {}
        for path in sorted(directory.glob(f"*{SEGMENT_SUFFIX}")):
            if not path.stem.isdigit():
                continue
            states = bytearray(len(_complete_lines(path)))  # all PENDING
            segment = _Segment(int(path.stem), path, states)
            if segment.complete:
                path.unlink()
            else:
                self._segments[segment.seq] = segment
        self._active: _Segment | None = None
        self._active_fd = -1
        self._next_seq = max(self._segments, default=0) + 1
        self._last_sync = time.monotonic()
        self._dirty = False
        self._closed = False

    # -- writing ---------------------------------------------------------------------------------
    def append(self, raw: bytes, *, in_flight: bool) -> SpoolRef:
        """Add one record (a JSON line without newlines); in_flight when it is being sent right now."""
        with self._lock:
            if self._closed:
                msg = f"spool {self.directory} is closed"
                raise SpoolError(msg)
            if self._active is None or len(self._active.states) >= self.segment_records:
                self._roll()
            active = self._active
            assert active is not None
            try:
                os.write(self._active_fd, raw + b"\n")
            except OSError as error:
                msg = f"cannot append to spool segment {active.path}: {error.strerror}"
                raise SpoolError(msg) from error
            active.states.append(IN_FLIGHT if in_flight else PENDING)
            if not in_flight:
                active.pending += 1
            self._dirty = True
            if time.monotonic() - self._last_sync >= self.fsync_interval_s:
                self._sync()
            return SpoolRef(active.seq, len(active.states) - 1)

    def sync(self) -> None:
        """fsync the active segment, so what was appended survives a crash of the machine."""
        with self._lock:
            self._sync()

    # -- delivery outcomes -----------------------------------------------------------------------
    def acknowledge(self, ref: SpoolRef) -> None:
        """Kafka acknowledged the record: it may leave the spool (with the rest of its segment)."""
        self._finish(ref)

    def _finish(self, ref: SpoolRef) -> None:
        """Mark a record done (acknowledged or discarded); a complete segment other than the active
        one is removed. Finishing a record twice changes nothing."""
        with self._lock:
            segment = self._segments.get(ref.segment)
            if segment is None or segment.states[ref.index] == DONE:
                return
            if segment.states[ref.index] == PENDING:
                segment.pending -= 1
            segment.states[ref.index] = DONE
            segment.done += 1
            if segment.complete and segment is not self._active:
                self._remove(segment)

    def release(self, ref: SpoolRef) -> None:
        """The delivery failed: the record stays and is handed out again by take_pending()."""
        with self._lock:
            segment = self._segments.get(ref.segment)
            if segment is not None and segment.states[ref.index] == IN_FLIGHT:
                segment.states[ref.index] = PENDING
                segment.pending += 1

    def take_pending(self, limit: int) -> list[tuple[SpoolRef, bytes]]:
        """Up to `limit` records that need (re)sending, oldest first, now marked in flight."""
        taken: list[tuple[SpoolRef, bytes]] = []
        with self._lock:
            for segment in list(self._segments.values()):
                if len(taken) >= limit:
                    break
                if not segment.pending:
                    continue
                if segment is self._active:
                    self._sync()
                lines = _complete_lines(segment.path)
                for index, state in enumerate(segment.states):
                    if len(taken) >= limit:
                        break
                    if state != PENDING:
                        continue
                    segment.states[index] = IN_FLIGHT
                    segment.pending -= 1
                    taken.append((SpoolRef(segment.seq, index), lines[index]))
        return taken

    def discard(self, ref: SpoolRef) -> None:
        """Drop a record that can never be delivered (unreadable on replay); it is not resent."""
        self._finish(ref)

    # -- state -----------------------------------------------------------------------------------
    def unacknowledged(self) -> int:
        """Records in the spool that Kafka has not acknowledged yet (pending or in flight)."""
        with self._lock:
            return sum(len(s.states) - s.done for s in self._segments.values())

    def waiting(self) -> int:
        """Records waiting to be (re)sent, not currently in flight."""
        with self._lock:
            return sum(s.pending for s in self._segments.values())

    def segment_files(self) -> list[Path]:
        """The segment files currently on disk, oldest first."""
        return sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}"))

    def close(self) -> None:
        """fsync, drop a fully acknowledged active segment and release the directory."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._sync()
            if self._active_fd >= 0:
                os.close(self._active_fd)
                self._active_fd = -1
            if self._active is not None and self._active.complete:
                self._remove(self._active)
            self._active = None
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

    # -- internals (lock held) -------------------------------------------------------------------
    def _roll(self) -> None:
        previous = self._active
        if previous is not None:
            self._sync()
            os.close(self._active_fd)
            self._active_fd = -1
            if previous.complete:
                self._remove(previous)
        seq = self._next_seq
        self._next_seq += 1
        path = self.directory / f"{seq:012d}{SEGMENT_SUFFIX}"
        try:
            self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as error:
            msg = f"cannot create spool segment {path}: {error.strerror}"
            raise SpoolError(msg) from error
        self._active = _Segment(seq, path, bytearray())
        self._segments[seq] = self._active
        # The new file's directory entry must be durable too, or an fsynced segment can vanish.
        self._sync_directory()

    def _sync(self) -> None:
        self._last_sync = time.monotonic()
        if self._dirty and self._active_fd >= 0:
            os.fsync(self._active_fd)
            self._dirty = False

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _remove(self, segment: _Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        self._segments.pop(segment.seq, None)
