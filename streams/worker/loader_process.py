"""The loader's composition (store, alerting) and the loader in its own process under `--role all`."""

from __future__ import annotations

import contextlib
import ctypes
import logging.config
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import orjson
import structlog
from kafka import KafkaProducer

from events.errors import TouchpathError
from projections.alerts.model import AlertEvent
from projections.journeys import JourneyModel
from streams.common import topics
from streams.common.logs import configure_logging, stdlib_logging_config
from streams.common.settings import Settings
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.worker.alerts import SCENARIO, StreamAlerting
from streams.worker.health import WorkerHealth
from streams.worker.loader import Loader, LoaderCounters

log = structlog.get_logger("touchpath.worker.loader_process")

REPORT_EVERY_S = 0.2  # how often the child sends its counters and new samples to the parent
RESTART_FIRST_S = 1.0  # wait before restarting a crashed child; doubles per crash in a row
RESTART_MAX_S = 30.0
HEALTHY_RUN_S = 60.0  # a child that ran this long before it crashed restarts after RESTART_FIRST_S
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class LoaderProcessError(TouchpathError):
    """The loader process exited without being asked to (it is restarted; /health is degraded)."""


def open_store(settings: Settings) -> ClickHouseProjectionStore:
    """The projection store of a loading process, with its schema in place."""
    if settings.clickhouse_url:
        store = ClickHouseProjectionStore.server(settings.clickhouse_url, settings.clickhouse_cluster)
    else:
        store = ClickHouseProjectionStore.embedded(settings.data_dir)
    store.create_schema()
    return store


def build_loader(
    settings: Settings, model: JourneyModel, store: ClickHouseProjectionStore, health: WorkerHealth
) -> tuple[Loader, KafkaProducer | None]:
    """The loader of this process, with alerting fed in-process when it is on."""
    names = topics.TopicNames.with_prefix(settings.topic_prefix)
    producer: KafkaProducer | None = None
    alerting = None
    if settings.stream_alerts and model.settings.alerts.enabled:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)

        def publish(alerts: list[AlertEvent]) -> None:
            assert producer is not None
            for alert in alerts:
                value = orjson.dumps({"scenario": SCENARIO, **alert.as_dict()})
                producer.send(names.alerts, key=alert.touchpoint.encode(), value=value)
            producer.flush()

        alerting = StreamAlerting(model, store, settings.partitions, publish)
    loader = Loader(
        store,
        bootstrap=settings.kafka_bootstrap,
        topic=names.journey_events,
        input_topic=names.touchpoints,
        consumer_id=settings.app_id,
        partitions=settings.partitions,
        observer=alerting,
        visible=health.rows_written,
    )
    return loader, producer


@dataclass(slots=True)
class LoaderReport:
    """What the child tells the parent every REPORT_EVERY_S: its counters since it started, and the
    insert durations and arrival-to-row latencies measured since the last report."""

    records: int = 0
    batches: int = 0
    ignored: int = 0
    rows: int = 0
    inserts: int = 0
    store_errors: int = 0
    store_error: str | None = None
    lag: int = -1
    insert_seconds: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    failed: str | None = None  # the child's last word before it exits on an error


CUMULATIVE = ("records", "batches", "ignored", "rows", "inserts", "store_errors")


class LoaderProcess:
    """The loader of `touchpath worker --role all` in a child process, so that chDB inserts, record
    decoding and alerting do not share the journey agent's GIL.

    The child owns the chDB data dir (this process never opens the store). It is started by start(),
    stopped by stop() (SIGTERM, then the child finishes its insert), and dies with this process even
    on kill -9 (PR_SET_PDEATHSIG, and its reports fail once the pipe breaks), so a restarted worker
    finds the data dir free. A child that exits on its own is a crash: named in /health's
    last_crashes (degraded, as a crashed agent) and restarted after a back-off; the loader is
    idempotent (chain rule, sink_progress, dedup tokens), so a restart loses and doubles nothing.
    Its counters and samples reach `counters` and the health object through a pipe.
    """

    def __init__(self, settings: Settings, model: JourneyModel, health: WorkerHealth) -> None:
        self.settings = settings
        self.model = model
        self.health = health
        self.counters = LoaderCounters()  # every child's counts summed; lag and errors of the current
        self._before = LoaderCounters()  # the counts of the children that exited
        self._crashes: deque[BaseException] = deque()
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.process: BaseProcess | None = None
        self.restarts = 0
        # The child is spawned from this thread, which lives until the child is gone: the kernel's
        # parent-death signal follows the spawning thread, not the process.
        self.thread = threading.Thread(target=self._supervise, name="touchpath-loader-watch", daemon=True)

    def start(self) -> None:
        """Start the child (and restart it after every crash) until stop()."""
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the child to finish its insert and exit; kill it if it does not within `timeout`."""
        self.stopping.set()
        with self._lock:
            process = self.process
        if process is not None and process.is_alive():
            process.terminate()  # SIGTERM: the child stops its loader and closes the store
        self.thread.join(timeout)
        if process is not None and process.is_alive():
            process.kill()
            process.join(5)

    def take_crashes(self) -> list[BaseException]:
        """The child's crashes not yet reported to /health (each restarted)."""
        taken = []
        while self._crashes:
            taken.append(self._crashes.popleft())
        return taken

    def _supervise(self) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no Faust, no locks held
        delay = RESTART_FIRST_S
        while not self.stopping.is_set():
            receiver, sender = context.Pipe(duplex=False)
            child = ChildArgs(self.settings, self.model, self.health.started_ms, os.getpid())
            process = context.Process(
                target=child_main, args=(child, sender), name="touchpath-loader", daemon=True
            )
            with self._lock:
                if self.stopping.is_set():
                    break
                process.start()
                self.process = process
            sender.close()  # the child holds the only writer: end of file when it exits
            started = time.monotonic()
            failed = self._follow(receiver)
            process.join()
            receiver.close()
            self._child_gone()
            if self.stopping.is_set():
                break
            self.restarts += 1
            reason = f"the loader process exited with code {process.exitcode}"
            self._crashes.append(LoaderProcessError(f"{reason}: {failed}" if failed else reason))
            delay = RESTART_FIRST_S if time.monotonic() - started >= HEALTHY_RUN_S else delay
            log.error("worker.loader_process_exited", code=process.exitcode, error=failed, restart_in_s=delay)
            if self.stopping.wait(delay):
                break
            delay = min(delay * 2, RESTART_MAX_S)

    def _follow(self, receiver: Connection) -> str | None:
        """Apply the child's reports until it exits; its last error, if it sent one."""
        failed = None
        while True:
            try:
                report: LoaderReport = receiver.recv()
            except (EOFError, OSError):
                return failed
            self._apply(report)
            failed = report.failed or failed

    def _apply(self, report: LoaderReport) -> None:
        counters, before = self.counters, self._before
        with self._lock:
            for name in CUMULATIVE:
                setattr(counters, name, getattr(before, name) + getattr(report, name))
            counters.store_error = report.store_error
            counters.lag = report.lag
            counters.insert_seconds.extend(report.insert_seconds)
        self.health.rows_measured(report.latencies)

    def _child_gone(self) -> None:
        with self._lock:
            for name in CUMULATIVE:
                setattr(self._before, name, getattr(self.counters, name))
            self.counters.lag = -1  # unknown until the next child has resumed
            self.counters.store_error = None


@dataclass(frozen=True, slots=True)
class ChildArgs:
    """What the loader process is started with (pickled by multiprocessing's spawn)."""

    settings: Settings
    model: JourneyModel
    started_ms: int  # the worker's start: rows of events that arrived before it are not samples
    parent: int  # the worker's pid


def child_main(child: ChildArgs, conn: Connection) -> None:
    """The loader process: load and report to the parent until SIGTERM or the parent is gone."""
    settings = child.settings
    _die_with_parent(child.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops this child
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    configure_logging(settings.log_level)
    logging.config.dictConfig(stdlib_logging_config(settings.log_level))
    try:
        code = _load_and_report(child, conn, stopping)
    except BaseException as error:  # the parent names it in /health; the traceback is in the log
        log.exception("loader.process_crashed")
        with contextlib.suppress(OSError):
            conn.send(LoaderReport(failed=f"{type(error).__name__}: {error}"))
        code = 1
    sys.exit(code)


def _load_and_report(child: ChildArgs, conn: Connection, stopping: threading.Event) -> int:
    health = WorkerHealth(started_ms=child.started_ms)  # for its latency samples only
    store = open_store(child.settings)
    producer = None
    parent = child.parent
    try:
        loader, producer = build_loader(child.settings, child.model, store, health)
        loader.start()
        try:
            # A broken pipe (the parent is gone) raises here and stops the loader below.
            while not stopping.wait(REPORT_EVERY_S) and loader.failed is None and os.getppid() == parent:
                conn.send(_report(loader, health))
        finally:
            loader.stop()
        last = _report(loader, health)
        if loader.failed is not None:
            last.failed = f"{type(loader.failed).__name__}: {loader.failed}"
        conn.send(last)
        return 1 if loader.failed is not None else 0
    finally:
        if producer is not None:
            producer.close()
        store.close()


def _report(loader: Loader, health: WorkerHealth) -> LoaderReport:
    counters = loader.counters
    report = LoaderReport(store_error=counters.store_error, lag=counters.lag)
    for name in CUMULATIVE:
        setattr(report, name, getattr(counters, name))
    report.insert_seconds = _drain(counters.insert_seconds)
    report.latencies = _drain(health.latencies)
    return report


def _drain(values: deque[float]) -> list[float]:
    """Take what the loader thread appended so far (popleft: appends meanwhile are not lost)."""
    out = []
    while values:
        out.append(values.popleft())
    return out


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when the worker that spawned it dies (kill -9 included),
    so that a restarted worker does not find chDB's data dir locked by an orphan."""
    if sys.platform.startswith("linux"):
        libc: Any = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
