"""The offset guard: each input offset folded exactly once and in order, whatever Faust delivers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Verdict(Enum):
    """What to do with one delivered input offset."""

    FOLD = "fold"  # the next one: fold it
    SEEN = "seen"  # below the next offset: folded before (Faust re-delivers after a restart)
    GAP = "gap"  # above it: Faust skipped some; read them back first (streams.worker.gapfill)


@dataclass(slots=True)
class OffsetGuard:
    """The next input offset to fold per partition, as the partition's batch chain left it.

    Faust re-delivers from its committed offset after a restart (behind the chain), and after a
    rebalance it can hand over a prefetched later offset first, or commit past ones it never
    delivered. The chain is durable (streams.worker.records), so both are seen here.
    """

    next: dict[int, int] = field(default_factory=dict)
    first: dict[int, int] = field(default_factory=dict)  # per partition: first offset of the open batch

    def check(self, partition: int, offset: int) -> Verdict:
        """The verdict on one delivered offset."""
        expected = self.next.get(partition)
        if expected is None or offset == expected:
            return Verdict.FOLD
        return Verdict.SEEN if offset < expected else Verdict.GAP

    def folded(self, partition: int, offset: int) -> None:
        """An offset was folded (or read back and folded)."""
        if partition not in self.first:
            self.first[partition] = self.next.get(partition, offset)
        self.next[partition] = offset + 1

    def span(self, partition: int) -> tuple[int, int]:
        """The open batch's input range [first, next) of a partition (empty when nothing was folded)."""
        end = self.next[partition]
        return self.first.get(partition, end), end

    def close_batch(self) -> None:
        """The open batch was published: the next one starts where it ended."""
        self.first.clear()

    def recovered(self, partition: int, next_offset: int | None) -> None:
        """Start a partition from its chain (None: nothing folded yet, take what comes)."""
        self.first.pop(partition, None)
        if next_offset is None:
            self.next.pop(partition, None)
        else:
            self.next[partition] = next_offset

    def forget(self, partition: int) -> None:
        """The partition went to another worker."""
        self.next.pop(partition, None)
        self.first.pop(partition, None)
