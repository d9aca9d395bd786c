#!/usr/bin/env bash
# The quality benchmark of issue 4: GPT d128 L4 on the KJV text, 4 workers with batch 32 each,
# 1,000 inner steps per worker (about 16M tokens), DiLoCo with H = 50 and H = 100 against the
# fully synchronous baseline at equal tokens (one worker with batch 4 x 32, same schedule), then a
# table (held-out loss, gap to the baseline, bytes per worker, wall time) and the plots.
# About 20 minutes per configuration on 2 cores (DiLoCo + its baseline). The text is dealt to the
# workers in interleaved 8 KiB blocks (each worker sees all of the book, as i.i.d. shards would).
# With TORCH_REF=1 an independent PyTorch implementation of the same DiLoCo (bench/peers/
# torch_diloco.py: same initial weights, shards, schedule; torch's Nesterov) runs for the first H.
# Usage: [TORCH_REF=1] bench/diloco-quality.sh [OUT_DIR=runs/quality] [H...=50 100]
#        (extra pipeline options: EXTRA="...")
set -euo pipefail
source "$(dirname "$0")/common.sh"
out=${1:-$bench_root/runs/quality}
shift || true
hs=("$@")
((${#hs[@]} > 0)) || hs=(50 100)
"$bench_root/scripts/fetch-data" -q
data=${LOCO_DATA:-$bench_root/data}/kjv.txt
read -r -a extra <<<"${EXTRA:-}"
runs=()
for h in "${hs[@]}"; do
  rounds=$((1000 / h))
  common=(--data "$data" --preset gpt-d128-l4 --workers 4 --rounds "$rounds" --inner-steps "$h" --batch 32
          --test-fraction 0.005 --text-layout interleaved --tools "$LOCO_BIN" "${extra[@]}")
  "$bench_root/scripts/diloco" "${common[@]}" -o "$out/diloco-h$h"
  # One baseline, evaluated every H steps of the first H: its curve covers the others' rounds
  # (the report aligns runs by tokens) and its final model does not depend on H.
  [[ $h == "${hs[0]}" ]] && "$bench_root/scripts/baseline" "${common[@]}" -o "$out/baseline-h$h"
  if [[ ${TORCH_REF:-0} == 1 && $h == "${hs[0]}" ]]; then
    mkdir -p "$out/torch-h$h"
    # Debian's OpenBLAS misdetects this VM's CPU (bench/train.sh): name the kernel for the peer.
    grep -qw avx512f /proc/cpuinfo && export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
    OPENBLAS_NUM_THREADS=1 "$PY" "$bench_root/bench/peers/torch_diloco.py" "$out/diloco-h$h" \
      "$out/torch-h$h/metrics.jsonl" --mode diloco --rounds "$rounds" --inner-steps "$h" --batch 32
    echo "PyTorch reference, H = $h: final held-out loss $(tail -1 "$out/torch-h$h/metrics.jsonl")"
  fi
  runs+=("$out/diloco-h$h")
done
"$bench_root/scripts/report" "${runs[@]}" --baseline "$out/baseline-h${hs[0]}" -o "$out/report"
cat "$out/report/report.md"
