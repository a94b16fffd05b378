#!/usr/bin/env bash
# The whole job at full scale (22.5 M rows): generate, backfill, train (preset PRESET, default
# `default`), score the four test days. Prints wall time and peak RSS (of the largest process)
# per stage. Not part of `make test`.
#   PRESET=default bash benchmarks/full_pipeline.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/nad-full-XXXX)}
nad=.venv/bin/nad
export PYTHONPATH=$PWD TF_CPP_MIN_LOG_LEVEL=2 PREFECT_SERVER_ANALYTICS_ENABLED=false
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$work/mlflow.db}

stage() {
  local name=$1; shift
  /usr/bin/time -f "$name: wall %e s, peak RSS %M KiB (largest process)" "$@" > "$work/$name.log" 2>&1 \
    || { tail -20 "$work/$name.log"; exit 1; }
  tail -1 "$work/$name.log"
}

stage generate "$nad" generate --out "$work/data" --preset full --seed 7
stage ingest "$nad" backfill "$work/data" --store "$work/store"
stage train "$nad" train --store "$work/store" --out "$work/artifacts" --preset "${PRESET:-default}"
stage score "$nad" score "$work"/data/01*_firewall.csv --truth "$work/data/truth" --out "$work/scores" \
  --model "$work/artifacts/runs/latest/fusion"
echo "logs and outputs in $work"
