"""A writer thread: batches go to the store in order while the caller folds the next ones."""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING

from streams.store.clickhouse import StoreError

if TYPE_CHECKING:
    from projections.engine import RowBatch
    from streams.store.columns import ColumnBatch
    from streams.store.protocol import ProjectionStore

_STOP = None


class BackgroundWriter:
    """Writes batches to a store on one thread, in the order they were handed over.

    ClickHouse (chDB in-process as well as a server) does an insert's work with the GIL released,
    so the caller keeps folding while it runs; batches that queued meanwhile are written together
    (one insert per table for all of them, each table's rows in their order), which pays an
    insert's fixed cost once. At most `depth` batches wait: submit() blocks beyond that. A failed
    write stops the writer; the next submit(), wait() or close() raises its StoreError.
    """

    def __init__(self, store: ProjectionStore, depth: int = 2, max_rows: int = 1_000_000) -> None:
        self.store = store
        self.max_rows = max_rows  # rows merged into one write at most (bounds memory)
        self.rows_written = 0
        self._queue: queue.Queue[RowBatch | ColumnBatch | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="touchpath-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: RowBatch | ColumnBatch) -> None:
        """Queue a batch for writing (blocks while `depth` batches wait)."""
        self._raise()
        if len(batch):
            self._queue.put(batch)

    def wait(self) -> int:
        """Block until every submitted batch is written; returns the rows written so far."""
        self._queue.join()
        self._raise()
        return self.rows_written

    def close(self) -> int:
        """Write what is queued, stop the thread; returns the rows written."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise()
        return self.rows_written

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, StoreError):
                raise error
            msg = f"the store writer failed: {error}"
            raise StoreError(msg) from error

    def _run(self) -> None:
        from streams.store.columns import merged  # noqa: PLC0415 -- pyarrow loads where rows are written

        while True:
            batch = self._queue.get()
            taken = 1
            stop = batch is _STOP
            # Batches that queued while the last write ran go out together.
            while batch is not None and len(batch) < self.max_rows:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                taken += 1
                if more is _STOP:
                    stop = True
                    break
                batch = merged(batch, more)
            try:
                if batch is not None and self._error is None:
                    self.rows_written += self.store.write(batch)
            except BaseException as error:  # handed to the caller's thread
                self._error = error
            finally:
                for _ in range(taken):
                    self._queue.task_done()
            if stop:
                return
