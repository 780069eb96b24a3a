"""Decode+validate and alignment throughput of the Python engine vs the native core, side by side."""

from __future__ import annotations

import gc
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from events.codec import check_event
from events.errors import Rejection
from projections.alignment import align_uncached, deviations_of
from projections.journeys import Journey, JourneyModel
from projections.native import NativeJourney, native_module
from projections.occurrence import Occurrence, occurrence_of
from streams.bench.engine import simulated_lines

Instance = tuple[Journey, list[Occurrence]]


def _timed(work: Callable[[], object]) -> float:
    """CPU seconds of one call (the machine is shared: CPU time, not wall time, is the figure)."""
    gc.collect()
    started = time.process_time()
    work()
    return time.process_time() - started


def _each(decode: Callable[[bytes], object], lines: list[bytes]) -> None:
    """Decode every line, keeping nothing (as a pipeline that hands each event on)."""
    for raw in lines:
        decode(raw)


def _instances(model: JourneyModel, lines: list[bytes]) -> list[Instance]:
    """Each customer's accepted events in (ts, event_id) order, with the journey they enter."""
    by_customer: dict[str, list[Occurrence]] = defaultdict(list)
    personas: dict[str, str | None] = {}
    for raw in lines:
        event = check_event(raw)
        if isinstance(event, Rejection):
            continue
        by_customer[event.customer_id].append(occurrence_of(event))
        personas.setdefault(event.customer_id, event.persona)
    out: list[Instance] = []
    for customer, events in by_customer.items():
        events.sort(key=lambda e: (e.ts, e.event_id))
        persona = personas[customer]
        known = persona if model.persona_known(persona) else model.default_persona
        out.append((model.journey_for(known or model.default_persona, events[0].touchpoint), events))
    return out


def _python_fold(instances: list[Instance]) -> None:
    for journey, events in instances:
        base, relative = 0, journey.initial_costs
        for event in events:
            base, relative = journey.advance_cached(base, relative, event.touchpoint)


def _python_align(instances: list[Instance], channel_of: dict[str, str]) -> None:
    for journey, events in instances:
        moves = align_uncached(journey, [e.touchpoint for e in events], None)
        deviations_of(journey, events, moves, channel_of)


def bench_native(model: JourneyModel, events: int) -> dict[str, Any]:
    """Events per CPU-second of each stage in the Python engine and the native core, and ratios."""
    native = native_module()
    lines = simulated_lines(model, events)
    load_before = os.getloadavg()[0]
    py_decode = _timed(lambda: _each(check_event, lines))
    rs_decode_objects = _timed(lambda: _each(native.check_event, lines))
    rs_decode = _timed(lambda: native.check_events(lines))
    instances = _instances(model, lines)
    n_events = sum(len(events) for _, events in instances)
    by_journey: dict[int, tuple[NativeJourney, list[Instance]]] = {}
    for journey, evs in instances:
        entry = by_journey.setdefault(id(journey), (NativeJourney(journey, model.channel_of), []))
        entry[1].append((journey, evs))
    paths = {key: [[e.touchpoint for e in evs] for _, evs in group] for key, (_, group) in by_journey.items()}
    tuples = {
        key: [[(e.ts, e.event_id, e.touchpoint, e.channel) for e in evs] for _, evs in group]
        for key, (_, group) in by_journey.items()
    }
    py_fold = _timed(lambda: _python_fold(instances))
    rs_fold = _timed(lambda: [nj.inner.fold_costs(paths[key]) for key, (nj, _) in by_journey.items()])  # type: ignore[attr-defined]
    py_align = _timed(lambda: _python_align(instances, model.channel_of))
    rs_align = _timed(
        lambda: [nj.inner.count_deviations(tuples[key]) for key, (nj, _) in by_journey.items()]  # type: ignore[attr-defined]
    )
    load_after = os.getloadavg()[0]

    def rate(count: int, seconds: float) -> int:
        return round(count / max(seconds, 1e-9))

    return {
        "events": len(lines),
        "customer_paths": len(instances),
        "decode_validate_python_per_s": rate(len(lines), py_decode),
        "decode_validate_native_to_python_tuples_per_s": rate(len(lines), rs_decode_objects),
        "decode_validate_native_per_s": rate(len(lines), rs_decode),
        "decode_validate_ratio": round(py_decode / max(rs_decode, 1e-9), 1),
        "incremental_cost_python_per_s": rate(n_events, py_fold),
        "incremental_cost_native_per_s": rate(n_events, rs_fold),
        "incremental_cost_ratio": round(py_fold / max(rs_fold, 1e-9), 1),
        "align_and_classify_python_per_s": rate(n_events, py_align),
        "align_and_classify_native_per_s": rate(n_events, rs_align),
        "align_and_classify_ratio": round(py_align / max(rs_align, 1e-9), 1),
        "load_average_1m_before_after": f"{load_before:.2f} / {load_after:.2f} on {os.cpu_count()} CPUs",
    }
