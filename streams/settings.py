"""Settings from the environment (TOUCHPATH_*), with defaults that make the embedded mode work."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


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
    log_level: str = "info"

    def journeys_path(self) -> Path:
        """The configured journey file, else the shipped example."""
        return self.journeys if self.journeys is not None else example_journeys()
