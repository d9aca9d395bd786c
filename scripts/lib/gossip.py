#!/usr/bin/python3
"""scripts/gossip's records and plot.

  gossip.py train-record --steps FILE --round R --node I --wall SECONDS -o FILE
  gossip.py round-record --root DIR --work DIR --round R --nodes N --inner-steps H --topology T
                 --schedule SPEC [--gossip] [--store RECORD] -o FILE
      DIR/local-I.json, merged.json, consensus.json in --work: loco-eval --json of each node's
      model, of their average, and loco-eval --consensus --json
  gossip.py plot --dir DIR          accuracy.svg/png from DIR/metrics.jsonl
Standard library only (matplotlib for the plot).
"""
import argparse
import os

from metrics import load, pyplot, read_jsonl, save_figure, loss_summary, step_losses, store_fields, write_record  # scripts/lib


def mean(xs):
    return sum(xs) / len(xs)


def train_record(steps_path, r, node, wall):
    mean, last = loss_summary(step_losses(steps_path))
    return {"round": r, "node": node, "train_loss": mean, "train_loss_last": last, "wall_seconds": wall}


def cmd_train_record(a):
    write_record(a.output, train_record(a.steps, a.round, a.node, a.wall))


def round_record(root, work, r, nodes, h, gossiped, topology, schedule):
    """Round r's metrics: the nodes' models (mean, min, max), their average (the merged model),
    the consensus distance, the training loss and the bytes a node received from its neighbours."""
    local = [load(os.path.join(work, f)) for f in sorted(os.listdir(work)) if f.startswith("local-")]
    merged = load(os.path.join(work, "merged.json"))
    cons = load(os.path.join(work, "consensus.json"))
    rec = {"pipeline": "gossip", "round": r, "step": r * h, "nodes": nodes, "inner_steps": h, "topology": topology,
           "gossip_schedule": schedule, "gossip": gossiped,
           "local_loss": mean([m["loss"] for m in local]), "local_accuracy": mean([m["accuracy"] for m in local]),
           "local_accuracy_min": min(m["accuracy"] for m in local),
           "local_accuracy_max": max(m["accuracy"] for m in local),
           "merged_loss": merged["loss"], "merged_accuracy": merged["accuracy"],
           "consensus_distance_sq": cons["consensus_distance_sq"], "consensus_distance": cons["consensus_distance"]}
    bytes_in = 0
    if r > 0:
        tr = [load(f"{root}/local/round-{r:04d}/node-{i}.json") for i in range(nodes)]
        go = [load(f"{root}/nodes/round-{r:04d}/node-{i}.json") for i in range(nodes)]
        known = [t["train_loss"] for t in tr if t["train_loss"] is not None]
        if known:  # worker commands need not record their losses
            rec["train_loss"] = mean(known)
        rec["node_wall_seconds"] = [t["wall_seconds"] for t in tr]
        bytes_in = mean([g["bytes_received"] for g in go])
    cum = (load(f"{root}/metrics/round-{r - 1:04d}.json")["cum_bytes_received_per_node"] if r > 0 else 0) + bytes_in
    rec["bytes_received_per_node"] = bytes_in
    rec["cum_bytes_received_per_node"] = cum
    return rec


def cmd_round_record(a):
    rec = round_record(a.root, a.work, a.round, a.nodes, a.inner_steps, a.gossip, a.topology, a.schedule)
    if a.store:
        rec["store"] = store_fields(a.store)
    write_record(a.output, rec)


def cmd_plot(a):
    plt = pyplot("gossip")
    if plt is None:
        return
    recs = read_jsonl(f"{a.dir}/metrics.jsonl")
    r = [x["round"] for x in recs]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True)
    top.plot(r, [x["local_accuracy"] for x in recs], "o-", label="local (mean over nodes)")
    top.fill_between(r, [x["local_accuracy_min"] for x in recs], [x["local_accuracy_max"] for x in recs], alpha=0.2)
    top.plot(r, [x["merged_accuracy"] for x in recs], "s--", label="merged (average of the nodes)")
    g = [x["round"] for x in recs if x.get("gossip")]
    top.plot(g, [0] * len(g), "|", color="gray", markersize=8, label="gossip rounds")
    top.set_ylabel("held-out accuracy")
    t = recs[0]
    top.set_title("%s, %d nodes, gossip %s" % (t["topology"], t["nodes"], t["gossip_schedule"]))
    top.legend(loc="lower right")
    bottom.plot(r, [x["consensus_distance"] for x in recs], "o-")
    bottom.set_ylabel("consensus distance")
    bottom.set_xlabel("round")
    fig.tight_layout()
    save_figure(fig, a.dir, "accuracy")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train-record", help="the record of a node's local steps")
    t.add_argument("--steps", required=True, help="loco-worker --metrics output")
    t.add_argument("--round", type=int, required=True)
    t.add_argument("--node", type=int, required=True)
    t.add_argument("--wall", type=float, required=True)
    t.add_argument("-o", "--output", required=True)
    t.set_defaults(fn=cmd_train_record)
    r = sub.add_parser("round-record", help="the round's metrics record")
    r.add_argument("--root", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--nodes", type=int, required=True)
    r.add_argument("--inner-steps", type=int, required=True)
    r.add_argument("--topology", required=True)
    r.add_argument("--schedule", required=True)
    r.add_argument("--gossip", action="store_true", help="the round mixed")
    r.add_argument("--store", help="a store run: the merge site's record of the round (docs/store.md)")
    r.add_argument("-o", "--output", required=True)
    r.set_defaults(fn=cmd_round_record)
    g = sub.add_parser("plot", help="accuracy.svg/png")
    g.add_argument("--dir", required=True)
    g.set_defaults(fn=cmd_plot)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
