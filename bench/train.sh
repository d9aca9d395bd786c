#!/usr/bin/env bash
# Benchmark of issue 3: training throughput of loco-worker against PyTorch 1.13 (Debian) on the
# same models, batch, optimizer and thread count, in one run. GPT d128 L4 and d256 L6 (ctx 128,
# batch 32, AdamW): tokens/s; MLP 784-256-256-10 (batch 128, SGD momentum): samples/s.
# Target: >= 1.5x PyTorch. Times are medians of per-step times after warm-up (loco: the worker's
# own per-step metrics, which exclude reading and writing files).
# Usage: bench/train.sh [THREADS=2]
set -euo pipefail
source "$(dirname "$0")/common.sh"
threads=${1:-2}
dir=$(mktemp -d /tmp/loco-bench-train.XXXXXX)
trap 'rm -rf "$dir"' EXIT

# Inputs: random bytes for the GPTs (the content does not change the work), random rows for the MLP.
"$PY" - "$dir" <<'PYEOF'
import sys, h5py, numpy as np
d = sys.argv[1]; rng = np.random.default_rng(0)
with h5py.File(f"{d}/tokens.h5", "w") as f:
    f.attrs.update(loco_format="loco", loco_version=1, kind="data", vocab=256)
    f.create_group("data")["tokens"] = rng.integers(0, 256, 1 << 20, dtype=np.uint8)
with h5py.File(f"{d}/rows.h5", "w") as f:
    f.attrs.update(loco_format="loco", loco_version=1, kind="data", classes=10)
    g = f.create_group("data"); g["x"] = rng.random((8192, 784), dtype=np.float32); g["y"] = rng.integers(0, 10, 8192, dtype=np.int32)
PYEOF

loco_step() {  # preset steps batch optimizer warmup → "median min max" seconds per step
  local preset=$1 steps=$2 batch=$3 opt=$4 warm=$5 data=$6
  "$LOCO_BIN/loco-init" --preset "$preset" --seed 1 -o "$dir/m.h5"
  rm -f "$dir/metrics.jsonl"
  "$LOCO_BIN/loco-worker" --threads "$threads" --model "$dir/m.h5" --data "$dir/$data" --steps "$steps" --batch "$batch" \
    --optimizer "$opt" --metrics "$dir/metrics.jsonl" -o "$dir/d.h5" -q
  median_min_max $(tail -n +"$((warm + 1))" "$dir/metrics.jsonl" | "$PY" -c 'import sys, json; [print(json.loads(l)["seconds"]) for l in sys.stdin]')
}
# Debian's OpenBLAS 0.3.21 does not recognise this VM's CPU ("Intel(R) Xeon(R) Processor") and
# falls back to a generic kernel (31 GFLOP/s for a 1024^2 GEMM on 1 thread); name the kernel that
# matches the CPU's vector unit so the peer runs at its best (295 GFLOP/s on 2 threads with
# SkylakeX here, results checked against float64). Override with OPENBLAS_CORETYPE.
if [[ -z ${OPENBLAS_CORETYPE:-} ]]; then
  if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
fi
echo "torch peer: OpenBLAS kernel ${OPENBLAS_CORETYPE:-autodetected}, 1 OpenBLAS thread, $threads torch threads"
torch_step() { BENCH_THREADS=$threads OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=$threads "$PY" "$(dirname "$0")/peers/torch_train.py" "$@"; }

printf '%-26s %14s %14s %12s %12s %8s\n' model "loco ms/step" "torch ms/step" "loco /s" "torch /s" ratio
row() {  # name per_step_units loco_line torch_line
  read -r lm lmin lmax <<<"$3"
  read -r tm tmin tmax per <<<"$4"
  awk -v n="$1" -v lm="$lm" -v lmin="$lmin" -v lmax="$lmax" -v tm="$tm" -v tmin="$tmin" -v tmax="$tmax" -v per="$per" -v u="$2" \
    'BEGIN{printf "%-26s %6.1f (%.0f-%.0f) %6.1f (%.0f-%.0f) %9.0f %s %9.0f %s %7.2fx\n", n, lm*1e3, lmin*1e3, lmax*1e3, tm*1e3, tmin*1e3, tmax*1e3, per/lm, u, per/tm, u, tm/lm}'
}
row "GPT d128 L4 (B32, ctx128)" tok "$(loco_step gpt-d128-l4 18 32 adamw 3 tokens.h5)" "$(torch_step gpt 128 4 15)"
row "GPT d256 L6 (B32, ctx128)" tok "$(loco_step gpt-d256-l6 10 32 adamw 2 tokens.h5)" "$(torch_step gpt 256 6 8)"
row "MLP 784-256-256-10 (B128)" smp "$(loco_step mlp-mnist 320 128 momentum:lr=0.01,momentum=0.9 20 rows.h5)" "$(torch_step mlp 300)"
