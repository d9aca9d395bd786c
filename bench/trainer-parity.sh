#!/usr/bin/env bash
# Quality parity of issue 14: the main job's DiLoCo (gpt-tiny on the KJV text, 4 workers, H = 50,
# batch 16, lr 3e-3, 20 rounds, cosine schedule, outer Nesterov 0.7/0.9) with every worker the
# PyTorch example trainer (share/examples/pytorch/train_worker.py, CPU, one thread, through
# --worker-cmd) and with every worker loco-worker. Same initial model, shards and schedule; the
# batches are drawn by different generators (identically distributed). Target: the final
# held-out losses within 2% of each other. Prints one line per run and the relative gap; exit 1
# when the gap is 2% or more. About 15 minutes on 2 cores (the PyTorch run is most of it).
# Usage: bench/trainer-parity.sh [OUT_DIR=runs/trainer-parity] [ROUNDS=20]
set -euo pipefail
source "$(dirname "$0")/common.sh"
out=${1:-$bench_root/runs/trainer-parity}
rounds=${2:-20}
"$bench_root/scripts/fetch-data" -q
data=${LOCO_DATA:-$bench_root/data}/kjv.txt
common=(--data "$data" --preset gpt-tiny --workers 4 --rounds "$rounds" --inner-steps 50 --batch 16
        --lr 3e-3 --test-fraction 0.005 --tools "$LOCO_BIN")
trainer="$PY -B $bench_root/share/examples/pytorch/train_worker.py --global {global_safetensors} \
--data {shard} --output {local} --steps {steps} --batch {batch} --lr {lr} --schedule {schedule} --step {step} \
--clip {clip} --worker {worker} --seed {seed} --state-in {state_in} --state-out {state_out} \
--metrics {metrics} --device cpu --threads 1"
# Debian's OpenBLAS misdetects this VM's CPU (bench/train.sh): name the kernel for PyTorch.
grep -qw avx512f /proc/cpuinfo && export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
t0=$(date +%s)
"$bench_root/scripts/diloco" "${common[@]}" -o "$out/loco"
t1=$(date +%s)
"$bench_root/scripts/diloco" "${common[@]}" --worker-cmd "$trainer" -o "$out/pytorch"
t2=$(date +%s)
"$PY" - "$out" "$((t1 - t0))" "$((t2 - t1))" <<'EOF'
import json, sys
out, secs = sys.argv[1], {"loco": sys.argv[2], "pytorch": sys.argv[3]}
final = {}
for run in ("loco", "pytorch"):
    rows = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")]
    final[run] = rows[-1]["loss"]
    print(f"{run:8s} workers: round {rows[-1]['round']}, held-out loss {rows[0]['loss']:.4f} -> {final[run]:.4f} "
          f"({secs[run]} s)")
gap = abs(final["pytorch"] - final["loco"]) / final["loco"]
print(f"relative gap {100 * gap:.2f}% (target < 2%)")
sys.exit(0 if gap < 0.02 else 1)
EOF
