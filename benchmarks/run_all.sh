#!/usr/bin/env bash
# Every measurement in docs/benchmarks.md, in order (~35 min on the 2-core CPU, plus ~40 min of
# training where the trained networks below are missing).
# Outputs: docs/benchmarks/*.txt (as printed), *.json, *.png.
# Run it on a quiet machine: with another process on one of the two cores, two OpenMP threads
# wait on each other and 2-thread medians become scheduler slices (docs/benchmarks.md).
# glibc malloc tuned against page faults (docs/benchmarks.md, "Machine and settings"): keep
# large freed blocks. The runs marked "default malloc" repeat a measurement without it, as most users run.
# TRAINED: a run directory of a trained emanet_r101 for the bf16 agreement rows; it is trained
# here on the synthetic dataset when missing (about 25 minutes; the figures in the docs come from
# these two commands: 400 iterations, then resumed with the schedule extended to 1000).
# TRAINED_513: that network fine-tuned on the same scenes upscaled to 513×513 (150 iterations of
# batch 2 from its last checkpoint, the poly schedule extended to 1150; about 15 minutes), for the
# agreement at the size the speed rows use.
set -euo pipefail
cd "$(dirname "$0")/.."
TUNED=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296
export GLIBC_TUNABLES=$TUNED
PY=${PY:-.venv/bin/python}
OUT=docs/benchmarks
TRAINED=${TRAINED:-runs/r101_synth}
TRAINED_513=${TRAINED_513:-runs/r101_synth513}
mkdir -p "$OUT"
run() { local name=$1; shift; "$@" | tee "$OUT/$name.txt"; }
default_malloc() { env -u GLIBC_TUNABLES "$@"; }

# 3. The EM attention unit, authors' formulation vs ours (2 threads, then 1 thread).
run emau_65_2threads $PY benchmarks/bench_emau.py --threads 2 --rounds 30 --channels-last --bf16 \
  --conv-variant --json $OUT/emau_65_2threads.json
run emau_65_2threads_default_malloc default_malloc $PY benchmarks/bench_emau.py --threads 2 --rounds 30 \
  --json $OUT/emau_65_2threads_default_malloc.json
run emau_65_b4_2threads $PY benchmarks/bench_emau.py --threads 2 --rounds 10 --batch 4 \
  --json $OUT/emau_65_b4_2threads.json
run emau_129_2threads $PY benchmarks/bench_emau.py --threads 2 --rounds 10 --size 129 \
  --json $OUT/emau_129_2threads.json
run emau_65 $PY benchmarks/bench_emau.py --threads 1 --rounds 15 --channels-last --bf16 --conv-variant \
  --json $OUT/emau_65.json

# 4. Whole model at 513×513.
run model_r101_2threads $PY benchmarks/bench_model.py --threads 2 --model emanet_r101 --size 513 --rounds 5 \
  --compile --json $OUT/model_r101_2threads.json
run model_r101_2threads_default_malloc default_malloc $PY benchmarks/bench_model.py --threads 2 \
  --model emanet_r101 --size 513 --rounds 5 --compile --json $OUT/model_r101_2threads_default_malloc.json
run model_r101 $PY benchmarks/bench_model.py --threads 1 --model emanet_r101 --size 513 --rounds 3 \
  --json $OUT/model_r101.json
run model_r101_onnx default_malloc $PY benchmarks/bench_model.py --threads 2 --model emanet_r101 --size 513 \
  --rounds 3 --compile --onnx --json $OUT/model_r101_onnx.json
run train_step_r50 default_malloc $PY benchmarks/bench_train_step.py --model emanet_r50 --size 256 --batch 2 \
  --steps 5 --threads 2
# The demo recipe as it was when these figures were recorded (128² scenes, SGD lr 0.01).
OLD_DEMO=('data.options={"size": 128}' 'data.crop_size=[128,128]' train.optimizer=sgd train.lr=0.01 train.bias_lr_mult=2.0)
if [ ! -d "$TRAINED/checkpoints" ]; then
  $PY -m emanet train demo "${OLD_DEMO[@]}" model.name=emanet_r101 'model.options={}' train.iters=400 train.batch_size=8 \
    train.checkpoint_every=200 output_dir="$TRAINED" --no-progress
  $PY -m emanet train demo "${OLD_DEMO[@]}" model.name=emanet_r101 'model.options={}' train.iters=1000 train.batch_size=8 \
    train.checkpoint_every=200 output_dir="$TRAINED" --resume --no-progress
fi
run agreement_r101_128 $PY benchmarks/bench_agreement.py "$TRAINED" --threads 2 --json $OUT/agreement_r101_128.json
run agreement_r101_513 $PY benchmarks/bench_agreement.py "$TRAINED" --threads 2 --size 513 --limit 20 \
  --json $OUT/agreement_r101_513.json
if [ ! -d "$TRAINED_513/checkpoints" ]; then
  $PY -m emanet train demo "${OLD_DEMO[@]}" model.name=emanet_r101 'model.options={}' 'data.crop_size=[513,513]' \
    'data.scales=[4.0078125]' train.batch_size=2 train.iters=1150 train.checkpoint_every=50 \
    output_dir="$TRAINED_513" --resume "$TRAINED/checkpoints/iter_0001000.pt" --no-progress
fi
run agreement_r101_finetuned_513 $PY benchmarks/bench_agreement.py "$TRAINED_513" --threads 2 --size 513 \
  --compile --json $OUT/agreement_r101_finetuned_513.json
if [ -d runs/demo/emanet_r18/checkpoints ]; then  # written by `make demo` (recorded: the 128² demo)
  run agreement_r18_demo_128 $PY benchmarks/bench_agreement.py runs/demo/emanet_r18 --threads 2 \
    --json $OUT/agreement_r18_demo_128.json
fi

# 1–2. Paper Table 1 and the scaling of EMA vs Non-local.
run table1 $PY -m emanet bench --threads 2 --preset table1 --repeats 3 --json $OUT/table1.json --plot $OUT/table1.png
run scaling_unit $PY -m emanet bench --threads 2 --preset scaling --repeats 3 --json $OUT/scaling_unit.json \
  --plot $OUT/scaling_unit.png
run scaling_head $PY -m emanet bench --threads 2 --preset scaling --scope head --repeats 3 \
  --json $OUT/scaling_head.json --plot $OUT/scaling_head.png
