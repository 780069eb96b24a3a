"""The one intake path: every record gets one verdict, and every refusal one bad_events row."""

from __future__ import annotations

from events.errors import BadReason
from projections.engine import JourneyEngine
from projections.intake import Intake, Kind, quarantine_row
from projections.journeys import JourneyModel
from streams.embedded.runner import EmbeddedRunner
from tests.conftest import event_line
from tests.conftest import online_journey as _online

DAY = 24 * 60


def _nested(levels: int) -> bytes:
    """An event whose attributes nest so that the event object counts `levels` levels in all."""
    value: object = 1
    for _ in range(levels - 1):
        value = {"a": value}
    return event_line("deep", "c1", "web.product_page", 0, attributes=value)


def test_each_record_gets_accepted_duplicate_or_a_rejection_with_its_quarantine_row(
    model: JourneyModel,
) -> None:
    """The verdict names what happened; a refused record carries the row the quarantine stores."""
    intake = Intake(JourneyEngine(model, "s1"))
    line = event_line("e1", "c1", "web.product_page", 0)
    assert intake.offer(line, "file", 1).kind is Kind.ACCEPTED
    assert intake.offer(line, "file", 2).kind is Kind.DUPLICATE
    garbled = intake.offer(b"{not json", "file", 3)
    assert garbled.kind is Kind.REJECTED
    assert garbled.rejection is not None
    assert garbled.rejection.reason is BadReason.MALFORMED_JSON
    assert garbled.quarantine == quarantine_row("s1", "file", 3, garbled.rejection, b"{not json")
    unknown = intake.offer(event_line("e2", "c1", "web.teleport", 1), "file", 4)
    assert unknown.quarantine is not None
    assert unknown.quarantine[:5] == ("s1", "file", 4, "unknown_touchpoint", "touchpoint")
    counters = intake.engine.counters
    assert (counters.received, counters.accepted, counters.duplicates, counters.bad) == (4, 2, 1, 2)


def test_the_nesting_depth_rule_applies_to_files_as_to_http(model: JourneyModel) -> None:
    """16 levels are taken, 17 are a schema_violation at attributes, also in `touchpath run`."""
    intake = Intake(JourneyEngine(model))
    assert intake.offer(_nested(16), "file", 1).kind is Kind.ACCEPTED
    deep = intake.offer(_nested(17), "file", 2)
    assert deep.rejection is not None
    assert (deep.rejection.reason, deep.rejection.field) == (BadReason.SCHEMA_VIOLATION, "attributes")
    stats = EmbeddedRunner(JourneyEngine(model), None).feed([(1, _nested(17))], "file")
    assert (stats.accepted, stats.bad) == (0, 1)


def test_the_future_bound_is_passed_in_by_the_shell(model: JourneyModel) -> None:
    """Events after not_after_ms are future_timestamp; without a bound they are taken."""
    line = event_line("e1", "c1", "web.product_page", 0)
    bounded = Intake(JourneyEngine(model), not_after_ms=0).offer(line, "file", 1)
    assert bounded.rejection is not None
    assert (bounded.rejection.reason, bounded.rejection.field) == (BadReason.FUTURE_TIMESTAMP, "occurred_at")
    assert Intake(JourneyEngine(model)).offer(line, "file", 1).kind is Kind.ACCEPTED


def test_lateness_is_measured_per_partition(model: JourneyModel) -> None:
    """A fast partition does not make a slow partition's customer's events too late."""
    for partitioned, expected in [(True, Kind.ACCEPTED), (False, Kind.REJECTED)]:
        intake = Intake(JourneyEngine(model))
        for position, line in enumerate(_online("c1"), start=1):
            intake.offer(line, "p1", position, 1 if partitioned else None)
        intake.offer(
            event_line("c9-1", "c9", "web.product_page", 60 * DAY), "p0", 1, 0 if partitioned else None
        )
        intake.engine.drain()
        late = intake.offer(
            event_line("c1-6", "c1", "web.product_page", 40), "p1", 6, 1 if partitioned else None
        )
        assert late.kind is expected, partitioned
        if partitioned:  # each partition's latest event time: 60 days on p0, 40 minutes on p1
            assert intake.stream_time[0] - intake.stream_time[1] == (60 * DAY - 40) * 60_000
        else:
            assert intake.stream_time == {}


def test_a_too_late_event_already_stored_is_a_duplicate(model: JourneyModel) -> None:
    """Deferred too-late verdicts: stored -> duplicate (counted accepted), else rejected as too_late."""
    intake = Intake(JourneyEngine(model), defer_too_late=True)
    for position, line in enumerate(
        [*_online("c1"), event_line("c9-1", "c9", "web.cart", 60 * DAY)], start=1
    ):
        intake.offer(line, "file", position)
    intake.engine.drain()
    resent = intake.offer(_online("c1")[1], "file", 7)
    new = intake.offer(event_line("c1-new", "c1", "web.product_page", 15), "file", 8)
    assert (resent.kind, new.kind) == (Kind.LATE, Kind.LATE)
    assert intake.settle_late(resent, stored=True).kind is Kind.DUPLICATE
    refused = intake.settle_late(new, stored=False)
    assert refused.quarantine is not None
    assert refused.quarantine[3] == BadReason.TOO_LATE.value
    counters = intake.engine.counters
    assert (counters.received, counters.accepted, counters.duplicates, counters.bad) == (8, 7, 1, 1)
