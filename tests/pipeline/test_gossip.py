#!/usr/bin/python3
"""End-to-end test of scripts/gossip: 4 nodes, 2 rounds, a small MLP on a generated 4-class data set.

Checks: the layout and the metrics records; each node's model after gossip is the ring mix (1/3
each) of its own and its neighbours' local models; the final merge is the mean of the node models
and the recorded consensus distance is numpy's; a rerun runs no tool and changes no file; deleted
outputs of the last round are remade bit for bit; other options on the folder are refused (exit 2);
a "none" schedule keeps the local models; the Slurm --dry-run chains each gossip job on the
training jobs of the node and its neighbours only.

Usage: test_gossip.py --bin BUILD/bin [--work DIR] [--keep]
Exit: 0 passed, 1 a check failed.
"""
import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipetest import SCRIPTS, Failure, check, make_classes, run, tensors, tree_digest  # noqa: E402

GOSSIP = SCRIPTS / "gossip"
MLP = '{"arch":"mlp","sizes":[3,8,4]}'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = Path(a.work or "/tmp/loco-gossip-pipeline").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = work / "d.csv"
    make_classes(data, 600, 3)
    out = work / "run"
    base = [GOSSIP, "--data", data, "--nodes", 4, "--rounds", 2, "--inner-steps", 5, "--batch", 16,
            "--model-config", MLP, "--partition", "dirichlet:alpha=0.5", "--topology", "ring",
            "--tools", a.bin, "--jobs", 2]
    run(base + ["-o", out])

    # Layout and records.
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    check([r["round"] for r in recs] == [0, 1, 2], f"rounds {[r['round'] for r in recs]}")
    for key in ("local_loss", "local_accuracy", "merged_loss", "merged_accuracy", "consensus_distance_sq",
                "consensus_distance", "cum_bytes_received_per_node"):
        check(all(key in r for r in recs), f"{key} missing from a record")
    check(recs[0]["consensus_distance_sq"] == 0 and recs[0]["local_loss"] == recs[0]["merged_loss"], recs[0])
    check(recs[1]["gossip"] and recs[2]["gossip"], "every round gossips under the default schedule")
    params = sum(v.size for v in tensors(out / "init.h5").values())
    check(recs[2]["cum_bytes_received_per_node"] == 2 * 2 * 4 * params,
          f"bytes: {recs[2]['cum_bytes_received_per_node']} for 2 rounds x 2 neighbours x {params} floats")
    for f in ("merged/final.h5", "accuracy.svg", "accuracy.png", "state/node-3/round-0002.h5",
              "local/round-0002/node-0.json", "nodes/round-0002/node-3.json"):
        check((out / f).is_file(), f"{f} missing")

    # Each node's model = ring mix of the local models (1/3 each); the sum in float64, rounded once.
    for i in range(4):
        got = tensors(out / f"nodes/round-0002/node-{i}.h5")
        loc = [tensors(out / f"local/round-0002/node-{j}.h5") for j in ((i - 1) % 4, i, (i + 1) % 4)]
        for k, v in got.items():
            w = [1 / 3, 1 - 2 / 3, 1 / 3]
            want = sum(wj * lj[k].astype(np.float64) for wj, lj in zip(w, loc))
            check(np.allclose(v, want, rtol=2**-23, atol=1e-7), f"node {i} tensor {k}: not the ring mix")
    # The final merge is the mean of the node models; the consensus distance is numpy's.
    nodes = [tensors(out / f"nodes/round-0002/node-{i}.h5") for i in range(4)]
    final = tensors(out / "merged/final.h5")
    dist = 0.0
    for k, v in final.items():
        stack = np.stack([n[k].astype(np.float64) for n in nodes])
        # loco-merge: float32 sum of 4 terms then a division: a few float32 roundings.
        check(np.allclose(v, stack.mean(axis=0), rtol=4 * 2**-23, atol=4 * 2**-23 * np.abs(stack).max()),
              f"final tensor {k} is not the mean of the nodes")
        dist += ((stack - stack.mean(axis=0)) ** 2).sum()
    check(abs(recs[2]["consensus_distance_sq"] - dist / 4) <= 1e-12 * dist, (recs[2]["consensus_distance_sq"], dist / 4))

    # A rerun runs no tool and changes nothing.
    before, log_lines = tree_digest(out), len((out / "commands.log").read_text().splitlines())
    run(base + ["-o", out])
    check(tree_digest(out) == before, "a rerun changed files")
    check(len((out / "commands.log").read_text().splitlines()) == log_lines, "a rerun ran tools")

    # Deleted outputs of the last round are remade bit for bit.
    node1, fin = tensors(out / "nodes/round-0002/node-1.h5"), final
    for f in ("nodes/round-0002/node-1.h5", "local/round-0002/node-1.h5", "state/node-1/round-0002.h5",
              "merged/final.h5", "metrics/round-0002.json", "metrics.jsonl"):
        (out / f).unlink()
    run(base + ["-o", out])
    for k, v in tensors(out / "nodes/round-0002/node-1.h5").items():
        check(np.array_equal(v, node1[k]), f"remade node 1 differs in {k}")
    for k, v in tensors(out / "merged/final.h5").items():
        check(np.array_equal(v, fin[k]), f"remade final merge differs in {k}")
    check([json.loads(l)["merged_loss"] for l in (out / "metrics.jsonl").read_text().splitlines()] ==
          [r["merged_loss"] for r in recs], "remade records differ")

    # Other options on the same folder are refused.
    p = run(base + ["-o", out, "--topology", "complete"], code=2)
    check("topology=ring" in p.stderr and "topology=complete" in p.stderr, p.stderr)
    run(base + ["-o", work / "bad", "--topology", "star"], code=2)
    run(base + ["-o", work / "bad", "--gossip", "often"], code=2)
    run(base + ["-o", work / "bad", "--clip", "inf"], code=2)  # refused before any tool runs (issue 19)

    # No gossip: node models are the local ones, copied.
    none = work / "none"
    run([str(c) for c in base] + ["-o", none, "--gossip", "none", "--rounds", "1"])
    rec = json.loads((none / "metrics/round-0001.json").read_text())
    check(not rec["gossip"] and rec["bytes_received_per_node"] == 0, rec)
    check((none / "nodes/round-0001/node-2.h5").read_bytes() == (none / "local/round-0001/node-2.h5").read_bytes(),
          "without gossip the node model is the local model")

    # Slurm dry run: each gossip job waits on its own and its two ring neighbours' training jobs.
    p = run(base + ["-o", work / "slurm", "--executor", "slurm", "--dry-run"])
    m = re.search(r"--job-name=slurm-r0001-gossip-0 .*--dependency=afterok:(\S+)", p.stderr)
    check(m and m.group(1) == "<slurm-r0001-train-0>:<slurm-r0001-train-1>:<slurm-r0001-train-3>",
          f"gossip dependencies: {m and m.group(1)}")
    m = re.search(r"--job-name=slurm-r0002-train-2 .*--dependency=afterok:(\S+)", p.stderr)
    check(m and m.group(1) == "<slurm-r0001-gossip-2>", f"train dependencies: {m and m.group(1)}")
    check(not (work / "slurm").exists(), "a dry run wrote files")

    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    print("test_gossip: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"test_gossip: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
