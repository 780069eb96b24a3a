#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: install (builds the native core), lint,
# type-check, check and test the Rust crate, start a real local Kafka broker, run every test, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "== install (pip install -e .[dev])"
$PY -m pip install -q -e '.[dev]' 2>&1 | grep -v "Running pip as the 'root' user" || true
$PY -m pip check >/dev/null || { $PY -m pip check; exit 1; }

echo "== ruff"
$PY -m ruff check .
$PY -m ruff format --check .
echo "== mypy --strict"
$PY -m mypy
echo "== import layers (streams -> projections -> events)"
lint-imports
echo "== native core: rustfmt, clippy -D warnings, cargo test"
(cd native && cargo fmt --check && cargo clippy -q --all-targets --features python -- -D warnings && cargo test -q)

if command -v docker-compose >/dev/null 2>&1; then
  echo "== docker-compose config"
  docker-compose -f docker-compose.yml config -q
fi

if [ -x deploy/kafka/local.sh ]; then
  echo "== local Kafka broker"
  data_dir=$(mktemp -d -t touchpath-kafka-XXXXXX)
  export TOUCHPATH_KAFKA_DATA="$data_dir"
  stop_broker() { deploy/kafka/local.sh stop || true; rm -rf "$data_dir"; }
  trap stop_broker EXIT
  eval "export $(deploy/kafka/local.sh start | grep '^TOUCHPATH_KAFKA_BOOTSTRAP=')"
  echo "broker at $TOUCHPATH_KAFKA_BOOTSTRAP"
fi

echo "== pytest"
$PY -m pytest "$@"
