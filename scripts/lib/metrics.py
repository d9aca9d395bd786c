#!/usr/bin/python3
"""Composes the diloco pipelines' JSON records (one per worker step, one per round) and every
pipeline's metrics.jsonl; holds the helpers of scripts/lib/fedavg.py and gossip.py."""
# Used by scripts/diloco (and its variants); every output is written to a temporary file and
# renamed, so a record that exists is complete. Standard library only (matplotlib for plots).
import argparse
import json
import os
import sys
import tempfile


def die(msg):
    print(f"metrics.py: error: {msg}", file=sys.stderr)
    sys.exit(4)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        die(f"{path}: {e}")


def write_atomic(path, text):
    """Writes text to path through a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def tensor_bytes(inspect):
    """Bytes of the /tensors group (parameters or delta values) in a loco-inspect --json object."""
    return sum(t["bytes"] for t in inspect["tensors"] if t.get("group", "tensors") == "tensors")


def payload_bytes(inspect):
    """What a worker sends for this file: its payload_bytes (or raw_bytes) attribute when the
    file carries one (compressed deltas), else the dense size of its tensors."""
    attrs = inspect.get("attributes", {})
    for key in ("payload_bytes", "raw_bytes"):
        if key in attrs:
            return int(attrs[key])
    return tensor_bytes(inspect)


def cmd_worker(a):
    ins = load(a.inspect)
    attrs = dict(ins.get("attributes", {}))
    losses = step_losses(a.steps)
    if "loss_mean" not in attrs and losses:  # a worker command's delta (loco-delta) carries no losses
        attrs["loss_mean"], attrs["loss_last"] = loss_summary(losses)
    rec = {
        "round": a.round,
        "worker": a.worker,
        "inner_steps": int(attrs.get("inner_steps", 0)),
        "step": int(attrs.get("step", 0)),
        "samples": int(attrs.get("samples", 0)),
        "train_loss_mean": attrs.get("loss_mean"),
        "train_loss_last": attrs.get("loss_last"),
        "payload_bytes": payload_bytes(ins),
        "wall_seconds": round(a.wall, 6),
    }
    if "templar_bytes" in attrs:  # what templar would send for the same selection (loco-compress(1))
        rec["templar_bytes"] = int(attrs["templar_bytes"])
    if a.stage is not None:
        rec["stage"] = a.stage
    write_atomic(a.output, json.dumps(rec, sort_keys=True) + "\n")


def cmd_round(a):
    ev = load(a.eval)
    model_bytes = tensor_bytes(load(a.model_inspect))
    rec = {
        "pipeline": a.pipeline,
        "round": a.round,
        "workers": a.workers,
        "inner_steps": a.inner_steps,
        "loss": ev["loss"],
    }
    for key in ("perplexity", "bits_per_byte", "accuracy"):
        if key in ev:
            rec[key] = ev[key]
    rec["eval_seconds"] = round(a.eval_wall, 6)
    if a.round == 0:
        rec.update(step=0, tokens=0, bytes_sent_per_worker=0, bytes_received_per_worker=0,
                   cum_bytes_sent_per_worker=0, cum_bytes_received_per_worker=0,
                   cum_bytes_per_worker=0, model_bytes=model_bytes, peak_bytes_per_sync=0)
    else:
        prev = load(a.previous)
        recs = [load(p) for p in a.worker_records]
        if not recs:
            die(f"round {a.round}: no worker records")
        aggs = [load(p) for p in a.aggregate or []]
        # peak: the largest payload a worker sends in one synchronisation.
        if a.accounting == "sync":
            # Synchronous data parallelism over a.workers workers: every inner step each worker
            # sends its gradient and receives the new parameters, model_bytes each way.
            sent = received = a.inner_steps * model_bytes
            peak = model_bytes
        elif a.accounting == "streaming":
            # Streaming DiLoCo: a worker sends one fragment's delta per stage and receives that
            # fragment's new global values; over a round every fragment once, so the model once.
            sent = max(sum(r["payload_bytes"] for r in recs if r["worker"] == w) for w in {r["worker"] for r in recs})
            received = model_bytes
            peak = max(r["payload_bytes"] for r in recs)
        else:
            # DiLoCo: once a round each worker sends its delta and receives the new global model.
            sent = max(r["payload_bytes"] for r in recs)
            received = model_bytes
            peak = sent
        # Wall time per worker over the round (a streaming worker runs once per stage).
        by_worker = {}
        for r in recs:
            by_worker[r["worker"]] = by_worker.get(r["worker"], 0.0) + r["wall_seconds"]
        walls = [round(by_worker[w], 6) for w in sorted(by_worker)]
        known = [r["train_loss_mean"] for r in recs if r["train_loss_mean"] is not None]  # commands may record none
        rec.update(
            step=max(r["step"] for r in recs),
            tokens=prev["tokens"] + sum(r["samples"] for r in recs),
            train_loss=sum(known) / len(known) if known else None,
            peak_bytes_per_sync=peak,
            bytes_sent_per_worker=sent,
            bytes_received_per_worker=received,
            cum_bytes_sent_per_worker=prev["cum_bytes_sent_per_worker"] + sent,
            cum_bytes_received_per_worker=prev["cum_bytes_received_per_worker"] + received,
            model_bytes=model_bytes,
            worker_wall_seconds=walls,
            seconds_per_step=round(max(walls) / a.inner_steps, 6),
            aggregate_seconds=round(sum(a.aggregate_wall or [0.0]), 6),
        )
        rec["cum_bytes_per_worker"] = rec["cum_bytes_sent_per_worker"] + rec["cum_bytes_received_per_worker"]
        if a.accounting == "diloco" and all("templar_bytes" in r for r in recs):
            rec["templar_bytes_sent_per_worker"] = max(r["templar_bytes"] for r in recs)
        if len(aggs) == 1 and "update_norm" in aggs[0]:
            rec["update_norm"] = aggs[0]["update_norm"]
        elif aggs and all("update_norm" in g for g in aggs):
            # the fragments' updates are disjoint: the round's update norm is their root sum of squares
            rec["update_norm"] = sum(g["update_norm"] ** 2 for g in aggs) ** 0.5
    if a.store:
        rec["store"] = store_fields(a.store)
    write_atomic(a.output, json.dumps(rec, sort_keys=True) + "\n")


def store_fields(manifest):
    """A store run's round (docs/store.md): the transfers and the set of deltas its model's manifest holds."""
    m = load(manifest)
    return {k: m.get(k) for k in ("aggregator", "workers", "deltas", "late", "missing", "refused")}


def collect(folder, rounds):
    """metrics.jsonl's text: the round records round-0000.json ... (up to the first missing one),
    one line each, as they were written."""
    lines = []
    for r in range(rounds + 1):
        path = os.path.join(folder, f"round-{r:04d}.json")
        if not os.path.exists(path):
            break
        with open(path, encoding="utf-8") as f:
            lines.append(f.read().strip())
    return "".join(line + "\n" for line in lines)


def read_jsonl(path):
    """The JSON objects of a file of one object a line (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def step_losses(path):
    """The per-step losses of a --metrics JSON-lines file: loco-worker's, or a worker command's, which
    may write none (an empty or absent file)."""
    if not path or not os.path.exists(path):
        return []
    return [x["loss"] for x in read_jsonl(path)]


def loss_summary(losses):
    """train_loss (the mean) and train_loss_last of a step's losses; None when it recorded none."""
    if not losses:
        return None, None
    return sum(losses) / len(losses), losses[-1]


def write_record(path, rec):
    """One JSON line in path, through path.tmp and a rename (the bytes the pipelines always wrote)."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    os.replace(path + ".tmp", path)


def pyplot(who):
    """matplotlib.pyplot with the Agg backend, or None (with a note) when it is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"{who}: matplotlib missing (Debian python3-matplotlib): no plot", file=sys.stderr)
        return None
    return plt


def save_figure(fig, folder, stem):
    """folder/stem.svg and folder/stem.png, each written to a temporary name and renamed."""
    for ext in ("svg", "png"):
        fig.savefig(os.path.join(folder, f".{stem}.{ext}"))
        os.replace(os.path.join(folder, f".{stem}.{ext}"), os.path.join(folder, f"{stem}.{ext}"))


def cmd_collect(a):
    text = collect(a.dir, a.rounds)
    try:
        with open(a.output, encoding="utf-8") as f:
            if f.read() == text:
                return  # unchanged: leave the file (and its timestamp) alone
    except FileNotFoundError:
        pass
    write_atomic(a.output, text)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="record of one worker step")
    w.add_argument("--inspect", required=True, help="loco-inspect --json of the delta")
    w.add_argument("--round", type=int, required=True)
    w.add_argument("--worker", type=int, required=True)
    w.add_argument("--wall", type=float, required=True)
    w.add_argument("--stage", type=int, help="streaming: the stage (synchronisation) of this worker step")
    w.add_argument("--steps", help="the step's --metrics JSON lines (losses of a delta that records none)")
    w.add_argument("-o", "--output", required=True)
    w.set_defaults(fn=cmd_worker)
    r = sub.add_parser("round", help="record of one round")
    r.add_argument("--pipeline", required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--workers", type=int, required=True)
    r.add_argument("--inner-steps", type=int, required=True)
    r.add_argument("--accounting", choices=["diloco", "sync", "streaming"], required=True)
    r.add_argument("--eval", required=True, help="loco-eval --json output")
    r.add_argument("--eval-wall", type=float, required=True)
    r.add_argument("--model-inspect", required=True, help="loco-inspect --json of the global model")
    r.add_argument("--aggregate", action="append", help="loco-aggregate --json summary (streaming: one per fragment)")
    r.add_argument("--aggregate-wall", type=float, action="append", help="seconds of an aggregation (summed)")
    r.add_argument("--previous", help="the previous round's record")
    r.add_argument("--store", help="a store run: the round's model manifest (docs/store.md)")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("worker_records", nargs="*")
    r.set_defaults(fn=cmd_round)
    c = sub.add_parser("collect", help="concatenate the round records into metrics.jsonl")
    c.add_argument("--dir", required=True)
    c.add_argument("--rounds", type=int, required=True)
    c.add_argument("-o", "--output", required=True)
    c.set_defaults(fn=cmd_collect)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
