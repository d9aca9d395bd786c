#!/usr/bin/python3
"""End-to-end test of scripts/fedavg on a generated 4-class data set and a small MLP.

Checks: the sampled clients of every round are those of the sampler documented in --help
(reimplemented here); FedAvg's global model is the sample-weighted mean of the clients' models
(numpy, from the deltas); a rerun runs no tool and changes no file; deleted outputs of the last
round are remade bit for bit; with --drop-rate and --min-completion 1 the rounds with a dropped
client are skipped and leave the model unchanged, the others aggregate; SCAFFOLD's server control
variate follows c <- c + (|S|/N) * weighted mean(c_i+ - c_i) (numpy, from the clients' state files);
FedProx records its mu; refusals exit 2; the Slurm --dry-run submits one array of the sampled
clients per round and an aggregation waiting on it with afterany.

Usage: test_fedavg.py --bin BUILD/bin [--work DIR] [--keep]
Exit: 0 passed, 1 a check failed.
"""
import argparse
import hashlib
import io
import json
import math
import re
import shutil
import sys
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipetest import SCRIPTS, Failure, check, make_classes, run, tensors, tree_digest  # noqa: E402

FEDAVG = SCRIPTS / "fedavg"


def attrs(path):
    with h5py.File(path, "r") as f:
        return dict(f.attrs)
MLP = '{"arch":"mlp","sizes":[3,8,4]}'


def plan(seed, r, C, fraction, min_fit, drop="0"):
    """The sampler as documented in scripts/fedavg --help."""
    h = lambda *f: int.from_bytes(hashlib.sha256(":".join(map(str, f)).encode()).digest()[:8], "big")
    k = min(C, max(math.ceil(Fraction(fraction) * C), min_fit))
    a = list(range(C))
    for j in range(k):
        s = j + h("sample", seed, r, j) % (C - j)
        a[j], a[s] = a[s], a[j]
    sampled = sorted(a[:k])
    dropped = [i for i in sampled if Fraction(h("drop", seed, r, i), 2 ** 64) < Fraction(drop)]
    return sampled, dropped


def weighted_mean_model(out, r, clients, distinct=True):
    """theta_(r-1) - sum_i n_i delta_i / sum_i n_i in float64, and the tolerance of loco's float32 result."""
    prev = tensors(out / f"rounds/round-{r - 1:04d}.h5")
    ds = [out / f"clients/round-{r:04d}/client-{i}.h5" for i in clients]
    n = [int(attrs(d)["samples"]) for d in ds]
    check(not distinct or len(set(n)) > 1, f"round {r}: the clients' sample counts are all equal ({n}); the weighting is not tested")
    want, tol = {}, {}
    for k, p in prev.items():
        dbar = sum(ni * tensors(d)[k].astype(np.float64) for ni, d in zip(n, ds)) / sum(n)
        want[k] = p.astype(np.float64) - dbar
        # Rounded twice to float32 (the mean, then theta - mean): half an ulp of each.
        tol[k] = 2.0 ** -24 * (np.abs(dbar) + np.abs(want[k])) + 1e-30
    return want, tol


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = Path(a.work or "/tmp/loco-fedavg-pipeline").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    make_classes(work / "d.csv", 480, 5)
    C, R = 6, 3
    base = [FEDAVG, "--tools", Path(a.bin).resolve(), "--data", work / "d.csv", "--label-column", "label",
            "--model-config", MLP, "--clients", C, "--fraction", "0.5", "--rounds", R, "--local-epochs", "1",
            "--batch", 8, "--partition", "dirichlet:alpha=0.5", "--inner-optimizer", "sgd:lr=0.1", "--seed", 3,
            "--jobs", 2]

    # FedAvg: sampling, the weighted mean, metrics.
    out = work / "fedavg"
    run(base + ["-o", out])
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    check([x["round"] for x in recs] == list(range(R + 1)), "one record per round, round 0 first")
    for r in range(1, R + 1):
        sampled, _ = plan(3, r, C, "0.5", 2)
        agg = json.loads((out / f"rounds/round-{r:04d}.json").read_text())
        check(agg["sampled"] == sampled and agg["finished"] == sampled and agg["status"] == "aggregated",
              f"round {r}: sampled {agg['sampled']}, the documented sampler gives {sampled}")
        check(sorted(int(p.stem.split("-")[1]) for p in (out / f"clients/round-{r:04d}").glob("client-*.h5")) == sampled,
              f"round {r}: only the sampled clients trained")
        want, tol = weighted_mean_model(out, r, sampled)
        got = tensors(out / f"rounds/round-{r:04d}.h5")
        for k in want:
            err = np.abs(got[k].astype(np.float64) - want[k])
            check((err <= tol[k]).all(), f"round {r}, {k}: FedAvg differs from the weighted mean by {err.max()}")
        rec = recs[r]
        check(rec["clients_sampled"] == 3 and rec["clients_finished"] == 3 and not rec["skipped"], rec)
        mb = rec["model_bytes"]
        check(mb == 4 * (3 * 8 + 8 + 8 * 4 + 4), f"model bytes {mb}")
        check(rec["bytes_sent"] == 3 * mb and rec["bytes_received"] == 3 * mb, rec)
        check(rec["cum_bytes"] == recs[r - 1]["cum_bytes"] + 6 * mb, rec)
        check(0 <= rec["accuracy"] <= 1 and math.isfinite(rec["loss"]), rec)
        # A client continues its own state: its data-stream position counts all its earlier steps.
        for i in sampled:
            steps = sum(json.loads((out / f"clients/round-{q:04d}/client-{i}.json").read_text())["steps"]
                        for q in range(1, r + 1) if (out / f"clients/round-{q:04d}/client-{i}.json").exists())
            check(attrs(out / f"state/client-{i}/round-{r:04d}.h5")["step"] == steps,
                  f"client {i}, round {r}: state step is not its cumulative step count {steps}")
    check(recs[R]["loss"] < recs[0]["loss"] - 0.05, f"FedAvg did not learn: {recs[0]} -> {recs[R]}")
    check((out / "accuracy.svg").exists() and (out / "accuracy.png").exists(), "plot missing")

    # Idempotent: a rerun runs no tool and changes no file.
    before, log = tree_digest(out), (out / "commands.log").read_text()
    run(base + ["-o", out])
    check(tree_digest(out) == before, "a rerun changed files")
    check((out / "commands.log").read_text() == log, "a rerun ran tools")
    # Deleted outputs of the last round are remade bit for bit.
    last = plan(3, R, C, "0.5", 2)[0]
    gone = [out / f"rounds/round-{R:04d}.h5", out / f"clients/round-{R:04d}/client-{last[0]}.h5",
            out / f"state/client-{last[0]}/round-{R:04d}.h5", out / f"metrics/round-{R:04d}.json"]
    saved = {p: p.read_bytes() for p in gone}
    for p in gone:
        p.unlink()
    run(base + ["-o", out])
    # The files carry a creation time: compare every dataset's bytes.
    def leaves(f):
        acc = {}
        f.visititems(lambda n, o: acc.__setitem__(n, o[()].tobytes()) if isinstance(o, h5py.Dataset) else None)
        return acc
    for p, b in saved.items():
        if p.suffix == ".h5":
            with h5py.File(io.BytesIO(b), "r") as old, h5py.File(p, "r") as new:
                check(leaves(old) == leaves(new), f"{p} was not remade bit for bit")
    check(json.loads(saved[gone[3]])["accuracy"] == json.loads(gone[3].read_text())["accuracy"], "metrics changed")

    # Refusals.
    run(base + ["-o", out, "--rounds", 4], code=2)
    run(base + ["-o", work / "bad1", "--strategy", "fedprox"], code=2)
    run(base + ["-o", work / "bad2", "--strategy", "fedadam:bogus=1"], code=2)
    run(base + ["-o", work / "bad3", "--strategy", "scaffold", "--inner-optimizer", "adamw"], code=2)
    run(base + ["-o", work / "bad4", "--fraction", "0"], code=2)
    check(not any((work / f"bad{i}").exists() for i in range(1, 5)), "a refused run wrote files")

    # Failures and the quorum ceil(0.6 * 3) = 2: a round with one dropped client aggregates the other
    # two; a round with two or more is skipped and keeps the model.
    drop = work / "drop"
    run(base + ["-o", drop, "--rounds", 4, "--drop-rate", "0.3", "--min-completion", "0.6"])
    kinds = set()
    for r in range(1, 5):
        sampled, dropped = plan(3, r, C, "0.5", 2, "0.3")
        agg = json.loads((drop / f"rounds/round-{r:04d}.json").read_text())
        check(agg["dropped"] == dropped and agg["sampled"] == sampled, f"round {r}: dropped {agg['dropped']}, want {dropped}")
        for i in dropped:
            check(not (drop / f"clients/round-{r:04d}/client-{i}.h5").exists(), "a dropped client sent a delta")
        g, g0 = tensors(drop / f"rounds/round-{r:04d}.h5"), tensors(drop / f"rounds/round-{r - 1:04d}.h5")
        check(agg["quorum"] == 2, agg)
        if len(dropped) >= 2:
            kinds.add("skipped")
            check(agg["skipped"] and agg["status"] == "skipped", agg)
            check(all((g[k] == g0[k]).all() for k in g), f"round {r}: a skipped round changed the model")
        else:
            kinds.add("aggregated")
            finished = [i for i in sampled if i not in dropped]
            check(not agg["skipped"] and agg["finished"] == finished, agg)
            want, tol = weighted_mean_model(drop, r, finished, distinct=False)
            check(all((np.abs(g[k] - want[k]) <= tol[k]).all() for k in g), f"round {r}: not the survivors' weighted mean")
    check(kinds == {"skipped", "aggregated"}, f"the drop run should have both kinds of rounds, has {kinds}")

    # SCAFFOLD: the server control variate against numpy.
    sc = work / "scaffold"
    run(base + ["-o", sc, "--rounds", 2, "--strategy", "scaffold"])
    for r in (1, 2):
        sampled, _ = plan(3, r, C, "0.5", 2)
        c0, c1 = tensors(sc / f"rounds/control-{r - 1:04d}.h5"), tensors(sc / f"rounds/control-{r:04d}.h5")
        n = [int(attrs(sc / f"clients/round-{r:04d}/client-{i}.control.h5")["samples"]) for i in sampled]
        for k in c0:
            acc = np.zeros(c0[k].shape)
            for ni, i in zip(n, sampled):
                new = tensors(sc / f"state/client-{i}/round-{r:04d}.h5", "state/scaffold_control")[k].astype(np.float64)
                prev = [q for q in range(r - 1, 0, -1) if i in plan(3, q, C, "0.5", 2)[0]]
                old = (tensors(sc / f"state/client-{i}/round-{prev[0]:04d}.h5", "state/scaffold_control")[k]
                       if prev else np.zeros(c0[k].shape))
                dc = tensors(sc / f"clients/round-{r:04d}/client-{i}.control.h5")[k]
                check(np.allclose(dc, old - new, rtol=0, atol=2.0 ** -23 * (np.abs(old) + np.abs(new)).max() + 1e-30),
                      f"round {r}, client {i}, {k}: the control delta is not c_i - c_i+")
                acc += ni * (new - old)
            want = c0[k] + (len(sampled) / C) * acc / sum(n)
            err = np.abs(c1[k] - want)
            tol = 2.0 ** -22 * (np.abs(want) + np.abs(acc / sum(n))) + 1e-12
            check((err <= tol).all(), f"round {r}, {k}: c differs from numpy by {err.max()}")
            check(np.abs(c1[k]).max() > 0, "the server control variate stayed zero")

    # FedProx: the clients' deltas record mu.
    fp = work / "fedprox"
    run(base + ["-o", fp, "--rounds", 1, "--strategy", "fedprox:proximal_mu=0.5"])
    i = plan(3, 1, C, "0.5", 2)[0][0]
    check(attrs(fp / f"clients/round-0001/client-{i}.h5")["prox_mu"] == 0.5, "prox_mu not recorded")

    # Simulated attackers: the last finished client's delta is replaced by loco-attack's sign flip of
    # the honest mean, and the aggregate (plain mean here) takes it: theta - (1/k)(sum(h) - mean(h)).
    at = work / "attack"
    run(base + ["-o", at, "--rounds", 1, "--fraction", "1.0", "--attackers", 1, "--attack", "sign-flip",
                "--reduce", "mean"])
    honest = [tensors(at / f"clients/round-0001/client-{i}.h5") for i in range(C - 1)]
    bad = tensors(at / "clients/round-0001/attack-0.h5")
    check(attrs(at / "clients/round-0001/attack-0.h5")["attack"].startswith("sign-flip"), "attack not recorded")
    prev, got = tensors(at / "rounds/round-0000.h5"), tensors(at / "rounds/round-0001.h5")
    for k in prev:
        hm = sum(h[k].astype(np.float64) for h in honest) / (C - 1)
        check(np.allclose(bad[k], -hm, rtol=1e-6, atol=1e-7), f"{k}: the attacker's delta is not -mean(honest)")
        want = prev[k] - (sum(h[k].astype(np.float64) for h in honest) + bad[k]) / C
        check(np.allclose(got[k], want, rtol=1e-6, atol=1e-6), f"{k}: the attacked round is not the mean with the attacker")
    p = run(base + ["-o", work / "x", "--attackers", "-1"], code=2)
    check("--attackers must be a non-negative integer" in p.stderr, p.stderr)

    # Slurm dry run: one array of the k sampled clients per round, aggregation after it with afterany.
    p = run(base + ["-o", work / "slurm", "--executor", "slurm", "--dry-run"])
    check(len(re.findall(r"--array=0-2", p.stderr)) == R, "one array of 3 clients per round")
    m = re.search(r"--job-name=slurm-r0001-aggregate .*--dependency=(\S+)", p.stderr)
    check(m and m.group(1) == "afterany:<slurm-r0001-clients>", f"aggregate dependency: {m and m.group(1)}")
    m = re.search(r"--job-name=slurm-r0002-clients .*--dependency=(\S+)", p.stderr)
    check(m and m.group(1) == "afterok:<slurm-r0001-aggregate>", f"clients dependency: {m and m.group(1)}")
    check(re.search(r'--step client --round 1\s+--index "\$SLURM_ARRAY_TASK_ID"', p.stderr), "array task command")
    check(not (work / "slurm").exists(), "a dry run wrote files")

    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    print("test_fedavg: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"test_fedavg: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
