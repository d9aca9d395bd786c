#!/usr/bin/env bash
# What closes DiLoCo's gap to the synchronous baseline at equal tokens (issue 4's search): the
# issue's configuration (GPT d128 L4, KJV text in interleaved 8 KiB blocks, 4 workers x batch 32,
# 1,000 inner AdamW steps each, about 16M tokens) with one change of H, outer optimizer, upload
# codec, streaming fragments or inner-lr floor per named configuration, each against the baseline
# of its own inner schedule. Then one report (table and plots of held-out loss against tokens and
# against cumulative bytes) over every run given. bench/RESULTS.md has the figures.
# About 10-15 minutes a configuration on 2 cores (H = 20 has 50 rounds of process start-ups).
# Usage: bench/diloco-sweep.sh [OUT_DIR=runs/sweep] [NAME...]   (no NAME: every configuration)
#        names: h50-paper h20-q4 h20-q4-m7 h20-q4-m7-seed2 h20-q4-floor s20-q4, and the baselines
#        base, base-floor, base-seed2 (each run is read against the baseline of its schedule and seed)
set -euo pipefail
source "$(dirname "$0")/common.sh"
out=${1:-$bench_root/runs/sweep}
shift || true
"$bench_root/scripts/fetch-data" -q
data=${LOCO_DATA:-$bench_root/data}/kjv.txt
common=(--data "$data" --preset gpt-d128-l4 --workers 4 --batch 32 --test-fraction 0.005
        --text-layout interleaved --tools "$LOCO_BIN")
tuned=(--outer nesterov:lr=1.0,momentum=0.6)  # found on gpt-tiny (RESULTS.md, first exploration)
best=(--outer nesterov:lr=1.0,momentum=0.7)   # the best here
floor=(--schedule cosine:warmup=100,total=1000,min_lr=4e-5)  # the inner lr ends at 10% of its peak
stream=(--fragments 2 --overlap 1 --mixing 0.5)
q4=(--codec quant:bits=4)
declare -A runs=(
  [base]="baseline --rounds 50 --inner-steps 20"
  [base-floor]="baseline --rounds 50 --inner-steps 20 ${floor[*]}"
  [base-seed2]="baseline --rounds 50 --inner-steps 20 --seed 2"
  [h50-paper]="diloco --rounds 20 --inner-steps 50"
  [h20-q4]="diloco --rounds 50 --inner-steps 20 ${tuned[*]} ${q4[*]}"
  [h20-q4-m7]="diloco --rounds 50 --inner-steps 20 ${best[*]} ${q4[*]}"
  [h20-q4-m7-seed2]="diloco --rounds 50 --inner-steps 20 ${best[*]} ${q4[*]} --seed 2"
  [h20-q4-floor]="diloco --rounds 50 --inner-steps 20 ${tuned[*]} ${q4[*]} ${floor[*]}"
  [s20-q4]="streaming-diloco --rounds 50 --inner-steps 20 ${stream[*]} ${tuned[*]} ${q4[*]}"
)
order=(base base-floor base-seed2 h50-paper h20-q4 h20-q4-m7 h20-q4-m7-seed2 h20-q4-floor s20-q4)
names=("$@")
((${#names[@]} > 0)) || names=("${order[@]}")
for name in "${names[@]}"; do
  [[ -n ${runs[$name]:-} ]] || { echo "diloco-sweep: unknown configuration '$name' (${order[*]})" >&2; exit 2; }
done
for name in "${names[@]}"; do
  read -r -a spec <<<"${runs[$name]}"
  "$bench_root/scripts/${spec[0]}" "${common[@]}" "${spec[@]:1}" -o "$out/$name"
done
# One report per baseline: the floor runs against base-floor, seed 2 against base-seed2, the rest against base.
report() {  # BASELINE OUT RUN...
  local base=$1 dest=$2 have=()
  shift 2
  for r in "$@"; do [[ -f $out/$r/metrics.jsonl ]] && have+=("$out/$r"); done
  [[ -f $out/$base/metrics.jsonl && ${#have[@]} -gt 0 ]] || return 0
  "$bench_root/scripts/report" "${have[@]}" --baseline "$out/$base" -o "$dest"
  cat "$dest/report.md"
}
report base "$out/report" h50-paper h20-q4 h20-q4-m7 s20-q4
report base-floor "$out/report-floor" h20-q4-floor
report base-seed2 "$out/report-seed2" h20-q4-m7-seed2
