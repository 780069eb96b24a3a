# The two commands a user needs: `make demo` (main job, embedded, no servers) and `make test`.
PY ?= python3
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint bench clean

# pip's own progress (downloads, builds) stays visible: a first install takes a minute or two.
install:
	@echo "==> installing touchpath and its dependencies (pip install -e '.[dev]'; the first time takes 1-2 min)"
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	@echo "==> installed: $$(command -v touchpath)"

demo: install
	@echo "==> touchpath demo: simulate 2,000 customers over 14 days, run them, summarise, write the report"
	touchpath demo --customers 2000 --days 14 --seed 7 --data-dir ./touchpath-data

test:
	bash deploy/run-tests.sh

lint: install
	$(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m mypy && lint-imports

bench: install
	touchpath bench engine --events 1000000

clean:
	rm -rf touchpath-data .kafka-data .pytest_cache .mypy_cache .ruff_cache *.egg-info native/target projections/_native.*.so
