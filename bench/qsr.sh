#!/usr/bin/env bash
# QSR (issue 17): the main job's DiLoCo (gpt-tiny on the KJV text, 4 workers, batch 16, lr 3e-3,
# cosine over 1,000 inner steps with 100 of warm-up) with the Quadratic Synchronization Rule
# (--sync-rule qsr:alpha=A: rounds of max(50, floor((A/lr)^2)) steps) against constant H at equal
# tokens: H = 50 (20 rounds) and the constant H with QSR's number of rounds (equal bytes).
# Prints the report table (held-out loss, bytes per worker). About 5 minutes on 2 cores.
# Usage: bench/qsr.sh [OUT_DIR=runs/qsr] [ALPHA=0.02]
set -euo pipefail
source "$(dirname "$0")/common.sh"
out=${1:-$bench_root/runs/qsr}
alpha=${2:-0.02}
"$bench_root/scripts/fetch-data" -q
data=${LOCO_DATA:-$bench_root/data}/kjv.txt
common=(--data "$data" --preset gpt-tiny --workers 4 --batch 16 --lr 3e-3 --test-fraction 0.005 --tools "$LOCO_BIN")
"$bench_root/scripts/diloco" "${common[@]}" --rounds 20 --inner-steps 50 --sync-rule "qsr:alpha=$alpha" -o "$out/qsr"
n=$(($(wc -l <"$out/qsr/metrics.jsonl") - 1))  # QSR's rounds
h=$(((1000 + n - 1) / n))                       # constant H of as many rounds (n*h >= 1000 steps)
"$bench_root/scripts/diloco" "${common[@]}" --rounds 20 --inner-steps 50 -o "$out/h50"
"$bench_root/scripts/diloco" "${common[@]}" --rounds "$n" --inner-steps "$h" -o "$out/h$h"
"$bench_root/scripts/report" "$out/qsr" "$out/h$h" --baseline "$out/h50" -o "$out/report" --no-plots
