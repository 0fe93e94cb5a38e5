#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): on a CUDA machine, at most 8 minutes; writes bench/out/gpu_check.json after
# every case, so that a run cut short keeps what it measured. Extra arguments go to bench.gpu_check
# (--parts dry_run train decode tokenizer, --budget SECONDS, --scale tiny, --eager-only).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p bench/out
exec timeout --signal=INT --kill-after=20 480 "$PY" -m bench.gpu_check --out bench/out/gpu_check.json "$@"
