# batchstore — the two commands: `make run` (the service on the embedded default) and
# `make test` (installs what the suites need, then runs every suite).

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/batchstore-target
export CARGO_TERM_COLOR ?= never
CARGO ?= cargo

.PHONY: run build test test-long test-rust test-python test-r lint lint-r fmt deps bench-metastore bench-data bench-access bench-gc bench-python bench-scan bench-r clean-data

## run: the metastore on SQLite (./batchstore.db) and a local warehouse (./warehouse), 127.0.0.1:50051
run:
	$(CARGO) run --release -p batchstore-metastore --bin metastore -- serve

build:
	$(CARGO) build --workspace --bins

## test: every suite: Rust (metastore, client, tablectl), Python, R
test: deps lint test-rust test-python test-r

test-rust: build
	$(CARGO) test --workspace --no-fail-fast

## test-long: the model-based, fault-injection and kill suites at a size for a long run (about
## 20-30 minutes): many more operation sequences, writes, faults and kills than `make test` runs
test-long: deps build
	BATCHSTORE_MODEL_CASES=2000 BATCHSTORE_MODEL_SEED=$${BATCHSTORE_MODEL_SEED:-$$(date +%s)} \
	  $(CARGO) test -p batchstore-tests --test model -- --nocapture
	BATCHSTORE_FAULT_WRITES=1500 $(CARGO) test -p batchstore-tests --test faults -- --nocapture
	BATCHSTORE_KILL_ROUNDS=3 $(CARGO) test -p batchstore-tests --test kills -- --nocapture

## test-python: `pip install ./python` (dev profile, sharing the cargo target dir), then pytest
test-python: build
	python3 -m pip install --force-reinstall --no-deps --quiet --disable-pip-version-check ./python -C build-args="--profile dev"
	python3 -m pytest python/tests

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path $(R_CRATE) -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## test-r: `R CMD INSTALL r-bindings` (dev profile, sharing the cargo target dir) into a library
## of its own, so a user's installed package is left alone; then testthat (the cross-language
## tests use the Python package test-python installs)
R_CRATE := r-bindings/src/rust/Cargo.toml
R_TEST_LIB := $(CARGO_TARGET_DIR)/r-test-library
R_TESTS := testthat::test_dir("r-bindings/tests/testthat", package = "batchstore", load_package = "installed", stop_on_failure = TRUE)
test-r: build lint-r
	mkdir -p $(R_TEST_LIB)
	BATCHSTORE_CARGO_PROFILE=dev R CMD INSTALL --library=$(R_TEST_LIB) --no-multiarch --preclean r-bindings
	R_LIBS=$(R_TEST_LIB) BATCHSTORE_REQUIRE_PYTHON=1 Rscript -e '$(R_TESTS)'

## lint-r: clippy on the R package's crate (it needs R to build, so it is not in the workspace)
lint-r:
	$(CARGO) clippy --manifest-path $(R_CRATE) -- -D warnings

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path $(R_CRATE)

## deps: system packages the suites need, installed only when missing (idempotent)
deps:
	@bash scripts/install-deps.sh

## bench-metastore: commit throughput/latency and resolve latency on SQLite and PostgreSQL
bench-metastore: deps
	$(CARGO) build --release -p batchstore-metastore -p batchstore-bench
	BATCHSTORE_METASTORE_BIN=$(CARGO_TARGET_DIR)/release/metastore \
	  $(CARGO_TARGET_DIR)/release/metastore-bench $(BENCH_ARGS)

## bench-data: store/load through batchstore vs plain Parquet files (2,000,000 rows)
bench-data: deps
	$(CARGO) build --release -p batchstore-metastore -p batchstore-bench
	BATCHSTORE_METASTORE_BIN=$(CARGO_TARGET_DIR)/release/metastore \
	  $(CARGO_TARGET_DIR)/release/data-bench $(BENCH_ARGS)

## bench-gc: garbage collection of 100,000 expired batches, local disk and moto S3: time,
## files/s and catalog statements per batch (BENCH_ARGS="--backend postgres" for PostgreSQL)
bench-gc: deps
	$(CARGO) build --release -p batchstore-metastore -p batchstore-bench
	BATCHSTORE_METASTORE_BIN=$(CARGO_TARGET_DIR)/release/metastore \
	  $(CARGO_TARGET_DIR)/release/gc-bench $(BENCH_ARGS)

## bench-access: tiny-commit p50/p99 and resolve p50/p99 with access off, with bearer tokens, and
## with tokens over TLS, in one run (BENCH_ARGS="--backend postgres" for PostgreSQL)
bench-access: deps
	$(CARGO) build --release -p batchstore-metastore -p batchstore-bench
	BATCHSTORE_METASTORE_BIN=$(CARGO_TARGET_DIR)/release/metastore \
	  $(CARGO_TARGET_DIR)/release/access-bench $(BENCH_ARGS)

## bench-python: store/load of a 5,000,000-row pandas frame vs pyarrow and deltalake
bench-python: deps
	$(CARGO) build --release -p batchstore-metastore
	python3 -m pip install --quiet --disable-pip-version-check deltalake
	python3 -m pip install --force-reinstall --no-deps --quiet --disable-pip-version-check ./python
	python3 bench/python/store_load.py $(BENCH_ARGS)

## bench-r: sf_writer/sf_reader of a 2,000,000-row data.frame vs saveRDS/readRDS
## bench-scan: DuckDB and Polars aggregates over a 10,000,000-row, 20-partition table through
## bs.scan, next to the same engines over the same Parquet files read directly
bench-scan: deps
	$(CARGO) build --release -p batchstore-metastore
	python3 -m pip install --force-reinstall --no-deps --quiet --disable-pip-version-check ./python
	BATCHSTORE_METASTORE_BIN=$(CARGO_TARGET_DIR)/release/metastore python3 bench/python/scan.py $(BENCH_ARGS)

bench-r: deps
	$(CARGO) build --release -p batchstore-metastore
	R CMD INSTALL --no-multiarch --preclean r-bindings
	BATCHSTORE_METASTORE_BIN=$(CARGO_TARGET_DIR)/release/metastore Rscript bench/r/sf_bench.R $(BENCH_ARGS)

clean-data:
	rm -rf batchstore.db batchstore.db-wal batchstore.db-shm warehouse
