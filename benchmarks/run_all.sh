#!/usr/bin/env bash
# Every measurement in docs/benchmarks.md, in order, one process per script (~10–20 min on the
# shared 2-core CPU). Outputs: docs/benchmarks/*.json, *.png and *.txt.
# glibc malloc tuned against page faults (shared/PERF_NOTES.md): keep large freed blocks.
set -euo pipefail
cd "$(dirname "$0")/.."
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296
PY=${PY:-.venv/bin/python}
OUT=docs/benchmarks
mkdir -p "$OUT"
$PY benchmarks/bench_emau.py --rounds 30 --channels-last --bf16 --json $OUT/emau_65.json | tee $OUT/emau_65.txt
$PY benchmarks/bench_emau.py --rounds 10 --batch 4 --json $OUT/emau_65_b4.json | tee $OUT/emau_65_b4.txt
$PY benchmarks/bench_emau.py --rounds 10 --size 129 --json $OUT/emau_129.json | tee $OUT/emau_129.txt
$PY benchmarks/bench_model.py --model emanet_r101 --size 513 --rounds 5 --json $OUT/model_r101.json \
  | tee $OUT/model_r101.txt
$PY -m emanet bench --preset table1 --repeats 3 --json $OUT/table1.json --plot $OUT/table1.png | tee $OUT/table1.txt
$PY -m emanet bench --preset scaling --repeats 3 --json $OUT/scaling_unit.json --plot $OUT/scaling_unit.png \
  | tee $OUT/scaling_unit.txt
$PY -m emanet bench --preset scaling --scope head --repeats 3 --json $OUT/scaling_head.json \
  --plot $OUT/scaling_head.png | tee $OUT/scaling_head.txt
