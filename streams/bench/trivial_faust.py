"""The trivial Faust agent of `bench stream`: take_events over the input, counting only (the ceiling)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import faust
import orjson


def main(argv: list[str]) -> None:
    """python -m streams.bench.trivial_faust BOOTSTRAP TOPIC EVENTS APP_ID DATADIR RESULT_FILE PORT."""
    bootstrap, topic, events, app_id, datadir, result, port = argv
    wanted = int(events)
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        autodiscover=False,
        datadir=datadir,
        consumer_auto_offset_reset="earliest",
        web_port=int(port),
        web_host="127.0.0.1",
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen = {"count": 0, "first": 0.0, "first_batch": 0, "cpu": 0.0}

    @app.agent(source, concurrency=1)
    async def count(stream: object) -> None:
        async for batch in stream.take_events(5_000, within=0.2):  # type: ignore[attr-defined]
            if not seen["count"]:
                seen["first"], seen["first_batch"] = time.perf_counter(), len(batch)
                seen["cpu"] = time.process_time()
            seen["count"] += len(batch)
            if seen["count"] >= wanted:
                # Timed from the first batch on: the events after it over the time they took.
                elapsed = time.perf_counter() - seen["first"]
                counted = seen["count"] - seen["first_batch"]
                cpu = time.process_time() - seen["cpu"]
                Path(result).write_bytes(orjson.dumps({"events": counted, "seconds": elapsed, "cpu": cpu}))
                os._exit(0)  # the figure is written; nothing else to shut down cleanly

    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
