"""The streaming detector holds observations until every source partition has passed them."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from projections.alerts.config import detector_config
from projections.alerts.detector import FrictionDetector
from projections.alerts.holdback import HeldDetector, TouchpointRecord, decode_record, encode_record
from projections.alerts.model import AlertAction, AlertEvent, Observation
from projections.journeys import JourneyModel
from tests.unit.test_alerts import CHECKOUT, T0, W, spike_story

SOURCES = 4


def _split(story: list[Observation]) -> list[list[Observation]]:
    """The story spread over source partitions by customer, as Kafka keys it."""
    parts: list[list[Observation]] = [[] for _ in range(SOURCES)]
    for observation in story:
        parts[zlib.crc32(observation.customer_id.encode()) % SOURCES].append(observation)
    return parts


def _rounds(parts: list[list[Observation]], lead: int) -> Iterator[tuple[int, list[Observation]]]:
    """(source, next chunk) round by round: source 0 reads `lead` observations a round, the others 7."""
    positions = [0] * SOURCES
    while any(positions[s] < len(parts[s]) for s in range(SOURCES)):
        for source in range(SOURCES):
            step = lead if source == 0 else 7
            chunk = parts[source][positions[source] : positions[source] + step]
            positions[source] += len(chunk)
            yield source, chunk


def _skewed(held: HeldDetector, parts: list[list[Observation]], lead: int) -> list[AlertEvent]:
    """Source 0 runs ahead of the others; progress markers follow each source's chunk."""
    alerts: list[AlertEvent] = []
    offset = 0
    for source, chunk in _rounds(parts, lead):
        for observation in chunk:
            offset += 1
            held.offer([observation], offset)
        # An exhausted source is idle: it reports the latest time.
        held.advance_source(source, chunk[-1].ts if chunk else T0 + 10**9)
        raised, _ = held.release()
        alerts.extend(raised)
    return alerts


def test_a_fast_source_does_not_close_windows_a_slow_one_still_fills(model: JourneyModel) -> None:
    """With one partition far ahead, folding on arrival judges half-counted windows; held back, the
    streaming detector raises exactly the embedded detector's alerts."""
    config = detector_config(model)
    story = spike_story()
    expected = FrictionDetector(config).observe_all(story, T0 + 10**9)
    assert [alert.action for alert in expected] == [AlertAction.OPEN, AlertAction.RESOLVE]

    held = HeldDetector(config, SOURCES)
    got = _skewed(held, _split(story), lead=400)
    assert [alert.alert_id for alert in got] == [alert.alert_id for alert in expected]
    assert [alert.signals for alert in got] == [alert.signals for alert in expected]

    # Without hold-back (every observation folded on arrival, clock from the fast source) the same
    # input gives something else: this is the failure the hold-back exists for.
    naive = FrictionDetector(config)
    naive_alerts: list[AlertEvent] = []
    for _, chunk in _rounds(_split(story), lead=400):
        naive_alerts.extend(naive.observe_all(chunk))
    assert [(a.alert_id, a.signals) for a in naive_alerts] != [(a.alert_id, a.signals) for a in expected]


def test_nothing_is_released_until_every_source_has_reported(model: JourneyModel) -> None:
    held = HeldDetector(detector_config(model), SOURCES)
    story = spike_story()
    for offset, observation in enumerate(story[:50]):
        held.offer([observation], offset)
    for source in range(SOURCES - 1):
        held.advance_source(source, story[49].ts)
    assert held.release() == ([], set())
    held.advance_source(SOURCES - 1, story[20].ts)
    _, changed = held.release()
    assert changed == {CHECKOUT}
    assert all(observation.ts > story[20].ts for observation in held.pending[CHECKOUT])


def test_a_restart_mid_incident_from_the_kept_record_repeats_no_alert(model: JourneyModel) -> None:
    """Records (state, held observations, applied offset, outbox) survive their bytes; messages
    delivered again after the restart are skipped by offset, and the incident resolves once."""
    config = detector_config(model)
    story = spike_story()
    cut = next(i for i, item in enumerate(story) if item.ts >= T0 + 75 * W)
    first = HeldDetector(config, 1)
    before: list[AlertEvent] = []
    for offset, observation in enumerate(story[:cut]):
        first.offer([observation], offset)
        first.advance_source(0, observation.ts - 1)  # the newest observation stays held
        before.extend(first.release()[0])
    assert [alert.action for alert in before] == [AlertAction.OPEN]
    assert first.pending[CHECKOUT]
    record = first.record(CHECKOUT, before)
    restored_record = decode_record(encode_record(record))
    assert restored_record.outbox == before
    assert restored_record.pending == record.pending
    assert encode_record(restored_record) == encode_record(record)

    second = HeldDetector(config, 1)
    second.restore(restored_record)
    after: list[AlertEvent] = []
    for offset, observation in enumerate(story):  # everything delivered again from offset 0
        second.offer([observation], offset)
        second.advance_source(0, observation.ts)
        after.extend(second.release()[0])
    second.advance_source(0, T0 + 10**9)
    after.extend(second.release()[0])
    assert [alert.action for alert in after] == [AlertAction.RESOLVE]
    assert after[0].incident_id == before[0].incident_id


def test_an_empty_record_round_trips(model: JourneyModel) -> None:
    record = HeldDetector(detector_config(model), 2).record("web.cart", [])
    assert isinstance(record, TouchpointRecord)
    assert decode_record(encode_record(record)) == record
