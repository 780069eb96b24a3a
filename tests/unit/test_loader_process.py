"""The loader process's reports reach the worker's /health figures, and a restart does not reset them."""

from __future__ import annotations

from projections.journeys import JourneyModel
from streams.common.settings import Settings
from streams.worker.health import WorkerHealth
from streams.worker.loader_process import LoaderProcess, LoaderReport


def test_counts_add_up_across_a_restarted_loader_process_and_samples_reach_the_health(
    model: JourneyModel,
) -> None:
    health = WorkerHealth()
    loader = LoaderProcess(Settings(), model, health)
    loader._apply(LoaderReport(rows=10, batches=2, lag=0, insert_seconds=[0.5], latencies=[40.0]))
    loader._apply(LoaderReport(rows=25, batches=4, lag=3, store_error="refused", latencies=[60.0]))
    loader._child_gone()  # crashed: the next child counts from zero again
    assert (loader.counters.lag, loader.counters.store_error) == (-1, None)  # unknown until it resumes
    loader._apply(LoaderReport(rows=5, batches=1, lag=0))
    assert (loader.counters.rows, loader.counters.batches, loader.counters.lag) == (30, 5, 0)
    assert list(loader.counters.insert_seconds) == [0.5]
    assert health.latency_ms(0.0) == 40.0
    assert health.latency_ms(0.99) == 60.0
