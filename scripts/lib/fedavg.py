#!/usr/bin/python3
"""scripts/fedavg's logic: the client sampler and failure simulation, the records, the plot.

  fedavg.py plan --seed S --round R --clients C --fraction F --min-fit-clients M
                 --min-completion Q --drop-rate P [--client I]
      prints the round's plan as one JSON object: round, k, sampled, dropped, trained, quorum
      (and with --client, previous: the last round before R in which client I trained, 0: never)
  fedavg.py client-record --steps FILE --local-steps H --round R --client I --wall SECONDS -o FILE
  fedavg.py round-record --root DIR --round R --eval FILE --eval-wall SECONDS --strategy SPEC
                 --clients C --model-bytes N [--scaffold] [--store MANIFEST] -o FILE
  fedavg.py plot --dir DIR          accuracy.svg/png from DIR/metrics.jsonl

The sampler (documented in scripts/fedavg --help and docs/pipelines.md, so that others can
reproduce it): k = min(C, max(ceil(fraction*C), min-fit-clients)), the fraction read as an exact
decimal; a = [0, 1, ..., C-1]; for j = 0..k-1 swap a[j] with a[j + h("sample", seed, R, j) mod
(C - j)]; the round's clients are a[0..k-1], sorted. h(...) is the first 8 bytes, big-endian, of
SHA-256 of the fields joined by ':' (e.g. "sample:1:3:0"). Client I of round R fails (with
--drop-rate P) when h("drop", seed, R, I) / 2^64 < P. The round's quorum is
max(1, ceil(min-completion*k)). Standard library only (matplotlib for the plot).
"""
import argparse
import hashlib
import json
import math
import os
from fractions import Fraction

from metrics import load, pyplot, read_jsonl, save_figure, loss_summary, step_losses, store_fields, write_record  # scripts/lib


def h(*fields):
    """The first 8 bytes, big-endian, of SHA-256 of the fields joined by ':'."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, fields)).encode()).digest()[:8], "big")


def sample_size(clients, fraction, min_fit):
    return min(clients, max(math.ceil(Fraction(fraction) * clients), min_fit))


def plan(seed, r, clients, fraction, min_fit, min_completion, drop_rate):
    """The plan of round r: the sampled clients, those that fail, those that train, the quorum."""
    k = sample_size(clients, fraction, min_fit)
    a = list(range(clients))
    for j in range(k):
        s = j + h("sample", seed, r, j) % (clients - j)
        a[j], a[s] = a[s], a[j]
    sampled = sorted(a[:k])
    dropped = [i for i in sampled if Fraction(h("drop", seed, r, i), 2 ** 64) < Fraction(drop_rate)]
    return {"round": r, "k": k, "sampled": sampled, "dropped": dropped,
            "trained": [i for i in sampled if i not in dropped],
            "quorum": max(1, math.ceil(Fraction(min_completion) * k))}


def previous_round(client, r, plan_of):
    """The last round before r in which client trained (0: never): the state it continues."""
    return next((q for q in range(r - 1, 0, -1) if client in plan_of(q)["trained"]), 0)


def cmd_plan(a):
    def plan_of(r):
        return plan(a.seed, r, a.clients, a.fraction, a.min_fit_clients, a.min_completion, a.drop_rate)
    p = plan_of(a.round)
    if a.client is not None:
        p["previous"] = previous_round(a.client, a.round, plan_of)
    print(json.dumps(p))


def client_record(steps_path, r, client, wall, steps):
    mean, last = loss_summary(step_losses(steps_path))
    return {"round": r, "client": client, "dropped": False, "steps": steps,
            "train_loss": mean, "train_loss_last": last, "wall_seconds": wall}


def cmd_client_record(a):
    write_record(a.output, client_record(a.steps, a.round, a.client, a.wall, a.local_steps))


def round_record(root, r, ev, eval_seconds, strategy, clients, scaffold, model_bytes):
    """Round r's metrics: the global model's held-out loss and accuracy, the plan and who finished,
    and the bytes: every trained client received the model (and SCAFFOLD's c); every finished one
    sent its delta (and its control delta)."""
    rec = {"pipeline": "fedavg", "strategy": strategy, "round": r, "clients": clients,
           "loss": ev["loss"], "accuracy": ev["accuracy"], "model_bytes": model_bytes, "eval_seconds": eval_seconds}
    up = down = 0
    if r > 0:
        agg = load(f"{root}/rounds/round-{r:04d}.json")
        recs = [load(f"{root}/clients/round-{r:04d}/client-{i}.json") for i in agg["trained"]
                if os.path.exists(f"{root}/clients/round-{r:04d}/client-{i}.json")]
        done = [x for x in recs if not x.get("dropped")]
        fin = set(agg["finished"])
        per = model_bytes * (2 if scaffold else 1)
        down = per * len(agg["trained"])
        up = per * len(fin)
        rec.update({"sampled": agg["sampled"], "dropped": agg["dropped"], "finished": agg["finished"],
                    "clients_sampled": len(agg["sampled"]), "clients_finished": len(fin),
                    "quorum": agg["quorum"], "skipped": agg["skipped"], "aggregate_seconds": agg["aggregate_seconds"],
                    "local_steps": [x["steps"] for x in done], "client_wall_seconds": [x["wall_seconds"] for x in done]})
        if done:
            known = [x["train_loss"] for x in done if x["train_loss"] is not None]
            if known:  # worker commands need not record their losses
                rec["train_loss"] = sum(known) / len(known)
        s = f"{root}/rounds/round-{r:04d}.summary.json"
        if os.path.exists(s):
            rec["update_norm"] = load(s)["update_norm"]
    rec["bytes_sent"] = up
    rec["bytes_received"] = down
    prev = load(f"{root}/metrics/round-{r - 1:04d}.json") if r > 0 else {"cum_bytes": 0}
    rec["cum_bytes"] = prev["cum_bytes"] + up + down
    rec["cum_local_steps"] = (prev.get("cum_local_steps", 0) if r > 0 else 0) + sum(rec.get("local_steps", []))
    return rec


def cmd_round_record(a):
    rec = round_record(a.root, a.round, load(a.eval), a.eval_wall, a.strategy, a.clients, a.scaffold, a.model_bytes)
    if a.store:
        rec["store"] = store_fields(a.store)
    write_record(a.output, rec)


def cmd_plot(a):
    plt = pyplot("fedavg")
    if plt is None:
        return
    recs = read_jsonl(f"{a.dir}/metrics.jsonl")
    r = [x["round"] for x in recs]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True)
    top.plot(r, [x["accuracy"] for x in recs], "o-", markersize=3, label="global model")
    sk = [x for x in recs if x.get("skipped")]
    top.plot([x["round"] for x in sk], [x["accuracy"] for x in sk], "x", color="red", label="skipped rounds")
    top.set_ylabel("held-out accuracy")
    top.set_title("%s, %d clients" % (recs[0]["strategy"], recs[0]["clients"]))
    top.legend(loc="lower right")
    bottom.plot(r, [x["loss"] for x in recs], "o-", markersize=3)
    bottom.set_ylabel("held-out loss")
    bottom.set_xlabel("round")
    fig.tight_layout()
    save_figure(fig, a.dir, "accuracy")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("plan", help="the round's sampled, dropped and training clients and quorum")
    s.add_argument("--seed", required=True)  # a text field of h(), as the user gave it
    s.add_argument("--round", type=int, required=True)
    s.add_argument("--clients", type=int, required=True)
    s.add_argument("--fraction", required=True)
    s.add_argument("--min-fit-clients", type=int, required=True)
    s.add_argument("--min-completion", required=True)
    s.add_argument("--drop-rate", required=True)
    s.add_argument("--client", type=int)
    s.set_defaults(fn=cmd_plan)
    c = sub.add_parser("client-record", help="the record of a client's training")
    c.add_argument("--steps", required=True, help="the training's --metrics output (may be empty)")
    c.add_argument("--local-steps", type=int, required=True, help="the local steps it trained")
    c.add_argument("--round", type=int, required=True)
    c.add_argument("--client", type=int, required=True)
    c.add_argument("--wall", type=float, required=True)
    c.add_argument("-o", "--output", required=True)
    c.set_defaults(fn=cmd_client_record)
    r = sub.add_parser("round-record", help="the round's metrics record")
    r.add_argument("--root", required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--eval", required=True, help="loco-eval --json output")
    r.add_argument("--eval-wall", type=float, required=True)
    r.add_argument("--strategy", required=True)
    r.add_argument("--clients", type=int, required=True)
    r.add_argument("--model-bytes", type=int, required=True)
    r.add_argument("--scaffold", action="store_true")
    r.add_argument("--store", help="a store run: the round's model manifest (docs/store.md)")
    r.add_argument("-o", "--output", required=True)
    r.set_defaults(fn=cmd_round_record)
    g = sub.add_parser("plot", help="accuracy.svg/png")
    g.add_argument("--dir", required=True)
    g.set_defaults(fn=cmd_plot)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
