"""Settings from the environment (TOUCHPATH_*), with defaults that make the embedded mode work."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.errors import TouchpathError
from streams.store.sqlguard import SqlLimits

EngineKind = Literal["python", "native"]  # the journey engines a shell can run
DEFAULT_ENGINE: EngineKind = "native"  # TOUCHPATH_ENGINE unset; python selects the reference


def example_journeys() -> Path:
    """The journey file shipped with touchpath (three personas, all five channels)."""
    return Path(str(resources.files("streams").joinpath("examples/journeys.yaml")))


class Settings(BaseSettings):
    """Process settings; every field can be set as TOUCHPATH_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="TOUCHPATH_", extra="ignore")

    data_dir: Path = Path("./touchpath-data")
    journeys: Path | None = None
    clickhouse_url: str | None = None  # e.g. http://default:@localhost:8123/touchpath
    clickhouse_cluster: str | None = None  # ON CLUSTER name: Replicated + Distributed tables
    kafka_bootstrap: str = "127.0.0.1:9092"
    partitions: int = 6  # of the touchpoints topic; at most this many workers share the load
    topic_prefix: str = ""  # e.g. "staging." -> staging.touchpoints, staging.touchpoints.bad, ...
    app_id: str = "touchpath"  # Faust app id: consumer group and changelog topic names
    state_store: str = "memory://"  # Faust table store: memory:// (changelog replay) or rocksdb://
    web_host: str | None = None  # worker's /health and /metrics bind address (default 127.0.0.1)
    web_port: int = 6066
    # Friction spike detection inside the worker (TOUCHPATH_STREAM_ALERTS=0 turns it off).
    stream_alerts: bool = True
    # Where `touchpath worker --role all` runs its loader (chDB inserts and alerting): in a child
    # process of its own (default; the journey agent keeps a GIL to itself) or in a thread.
    loader: Literal["process", "thread"] = "process"
    # How long Kafka waits for a silent worker before handing its partitions to others.
    session_timeout_s: float = 30.0
    ingest_keys: SecretStr = SecretStr("")  # "key_id:secret,key_id2:secret2": who may POST /v1/events
    sql_keys: SecretStr = SecretStr("")  # same format: who may GET /v1/sql on `touchpath serve`
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8080
    ingest_ack_timeout_s: float = 5.0  # longest wait for durability before answering 503
    ingest_rate_limit: float = 2000.0  # events/s per API key; 0 = unlimited
    ingest_rate_burst: int = 10_000
    log_level: str = "info"
    # The journey engine of `run`, `demo`, `serve`, `replay`, `bench replay` and the worker's journey
    # agent: the native core (default) or the Python reference (python), which writes the same rows
    # of every table and the same journey states.
    engine: EngineKind = DEFAULT_ENGINE
    # File-mode creation mask of every touchpath process (octal): 077 = data dirs 0700, files 0600,
    # since they hold customer data; 027 lets a group read them.
    umask: str = "077"

    def umask_bits(self) -> int:
        """The umask as an integer; TouchpathError naming the setting when it is not octal 000-777."""
        try:
            bits = int(self.umask, 8)
        except ValueError:
            bits = -1
        if not 0 <= bits <= 0o777:
            msg = f"TOUCHPATH_UMASK must be octal like 077 or 027, got '{self.umask}'"
            raise TouchpathError(msg)
        return bits

    # Live paths (ingest, serve, worker) quarantine events more than this far ahead of their wall
    # clock as future_timestamp; `run` does the same against the time it starts (see README).
    # 300 s = the request signing tolerance: a sender whose clock passes the signature check never
    # trips it, and no watermark moves more than 5 minutes past real time (alert lateness is 1 h,
    # the shortest abandon_after days).
    future_bound_s: float = 300.0
    # HTTP connection limits of `ingest` and `serve` (uvicorn has no header timeout or socket cap).
    ingest_max_connections: int | None = None  # default: half the file-handle limit, at most 512
    ingest_header_timeout_s: float = 10.0
    ingest_body_timeout_s: float = 30.0
    # Analysts' SQL (`touchpath sql`, GET /v1/sql): a read-only session with these limits.
    sql_clickhouse_url: str | None = None  # a read-only analyst user's DSN (deploy/clickhouse/analyst.sql)
    sql_timeout_s: int = 30  # max_execution_time
    sql_max_memory_mb: int = 1024  # max_memory_usage
    sql_max_rows: int = 100_000  # max_result_rows
    sql_max_result_mb: int = 64  # max_result_bytes
    sql_workers: int = 2  # queries running at once in `serve` (their own threads, not ingest's)

    def sql_limits(self) -> SqlLimits:
        """The analyst session limits from these settings."""
        return SqlLimits(
            max_execution_time_s=self.sql_timeout_s,
            max_memory_bytes=self.sql_max_memory_mb * 1024**2,
            max_result_rows=self.sql_max_rows,
            max_result_bytes=self.sql_max_result_mb * 1024**2,
        )

    def journeys_path(self) -> Path:
        """The configured journey file, else the shipped example."""
        return self.journeys if self.journeys is not None else example_journeys()
