"""A store's first insert does not pay for importing pandas (touchpath never inserts a DataFrame)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CODE = """
import sys
from pathlib import Path
from projections import schema
from streams.store.clickhouse import ClickHouseProjectionStore
store = ClickHouseProjectionStore.embedded(Path(sys.argv[1]))
store.create_schema()
store.insert_rows(schema.BAD_EVENTS, [("live", "f", 1, "malformed_json", None, "", "{")])
print(store.scalar("SELECT count() FROM bad_events"), "pandas" in sys.modules)
store.close()
"""


def test_the_first_insert_leaves_pandas_unloaded(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path)], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["1", "False"]
