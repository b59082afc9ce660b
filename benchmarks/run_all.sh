#!/usr/bin/env bash
# Every measurement in docs/benchmarks.md, in order (~20 min on the shared 2-core CPU).
# Outputs: docs/benchmarks/*.txt (as printed), *.json, *.png.
# One thread by default: while these ran, another process held one of the two cores, and two
# OpenMP threads then wait on each other (see docs/benchmarks.md); THREADS=2 to change it.
# glibc malloc tuned against page faults (shared/PERF_NOTES.md): keep large freed blocks.
set -euo pipefail
cd "$(dirname "$0")/.."
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296
PY=${PY:-.venv/bin/python}
T=${THREADS:-1}
OUT=docs/benchmarks
mkdir -p "$OUT"
run() { local name=$1; shift; "$@" | tee "$OUT/$name.txt"; }
run emau_65 $PY benchmarks/bench_emau.py --threads "$T" --rounds 15 --channels-last --bf16 --conv-variant \
  --json $OUT/emau_65.json
run emau_65_b4 $PY benchmarks/bench_emau.py --threads "$T" --rounds 5 --batch 4 --json $OUT/emau_65_b4.json
run emau_129 $PY benchmarks/bench_emau.py --threads "$T" --rounds 5 --size 129 --json $OUT/emau_129.json
run emau_65_2threads $PY benchmarks/bench_emau.py --threads 2 --rounds 20 --channels-last --bf16 \
  --conv-variant --json $OUT/emau_65_2threads.json
run model_r101 $PY benchmarks/bench_model.py --threads "$T" --model emanet_r101 --size 513 --rounds 4 \
  --json $OUT/model_r101.json
run model_r101_defaultbn $PY benchmarks/bench_model.py --threads "$T" --model emanet_r101 --size 513 --rounds 2 \
  --bn-stats default --skip "eager fp32" "optimized fp32" --json $OUT/model_r101_defaultbn.json
run model_r101_2threads $PY benchmarks/bench_model.py --threads 2 --model emanet_r101 --size 513 --rounds 3 \
  --json $OUT/model_r101_2threads.json
run table1 $PY -m emanet bench --threads "$T" --preset table1 --repeats 3 --json $OUT/table1.json --plot $OUT/table1.png
run scaling_unit $PY -m emanet bench --threads "$T" --preset scaling --repeats 3 --json $OUT/scaling_unit.json \
  --plot $OUT/scaling_unit.png
run scaling_head $PY -m emanet bench --threads "$T" --preset scaling --scope head --repeats 3 \
  --json $OUT/scaling_head.json --plot $OUT/scaling_head.png
