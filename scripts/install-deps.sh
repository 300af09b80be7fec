#!/usr/bin/env bash
# Installs the system packages the test suites need, only when they are missing.
# Safe to run again and again; never prompts (CI has no standard input).
set -euo pipefail

need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
# R and testthat for the R package's suite (Debian's packages; CRAN is not reachable).
command -v R >/dev/null 2>&1 || need+=(r-base-dev)
[ -d /usr/lib/R/site-library/testthat ] || [ -d /usr/lib/R/library/testthat ] || need+=(r-cran-testthat)
command -v faketime >/dev/null 2>&1 || need+=(faketime)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# PostgreSQL must accept connections on 127.0.0.1:5432 (the tests also start it themselves).
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  version=$(ls /etc/postgresql | sort -n | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi

# Python packages the Python suite and package need (PyPI); DuckDB and Dask read scans in the
# engine tests.
if ! python3 -c "import pyarrow, pandas, polars, pytest, duckdb, dask.dataframe" >/dev/null 2>&1; then
  echo "installing pyarrow, pandas, polars, pytest, duckdb, dask from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check "pyarrow>=14" "pandas>=2" "polars>=1" \
    "pytest>=8" "duckdb>=1" "dask[dataframe]>=2024"
fi

# PySpark reads manifests in the engine tests (it runs on the machine's Java 17).
if ! python3 -c "import pyspark" >/dev/null 2>&1; then
  echo "installing pyspark from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check "pyspark>=3.5"
fi
if ! command -v java >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless
fi

# moto's S3-compatible server, for the S3 tests (bound to 127.0.0.1 by the tests).
if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c "import moto.server, flask" >/dev/null 2>&1; then
  echo "installing moto[server] from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]"
fi
command -v curl >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq --no-install-recommends curl; }
