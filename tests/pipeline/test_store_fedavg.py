"""Federated learning across sites (docs/store.md, scripts/fedavg --store): the aggregator and two
client sites in three folders, linked only through an S3 server (s3rver on 127.0.0.1, started here),
rclone configured by environment variables only.

SCAFFOLD with client sampling, simulated drops and a quorum (4 rounds of 6 clients, 3 sampled a
round: two rounds aggregate, one has every sampled client dropped, one has fewer than the quorum):
- clients 0-2 at site A, 3-5 at site B: the final model and server control variate are those of
  the one-folder run, bit for bit, as are every round's held-out loss and record; each model's
  manifest carries the next round's plan; a site trains only its sampled clients that are not
  dropped; metrics.jsonl records the transfers of every client that trained;
- site A killed (kill -9, its whole process group) while a client trains in round 2, and rerun:
  the same final model, each client's round trained once and published once;
- --late is refused; no secret reaches a run folder.
Fails, naming it, when s3rver is not installed (nothing is skipped)."""
import json
import sys

from pipetest import SCRIPTS, check, make_classes, run
from storetest import checksum, finish, kill9, site, store_main, wait_for

FEDAVG = SCRIPTS / "fedavg"
MLP = '{"arch":"mlp","sizes":[3,8,4]}'
# The plans of seed 3 (scripts/lib/fedavg.py plan): round 1 trains [0, 1] (5 dropped), round 2
# [0, 3] (4 dropped), round 3 none (all dropped), round 4 [2] (1 and 3 dropped; below the quorum 2).
TRAINED = {1: [0, 1], 2: [0, 3], 3: [], 4: [2]}


def tests(bin_dir, work, env, s3):
    make_classes(work / "d.csv", 480, 5)
    opts = [FEDAVG, "--data", work / "d.csv", "--label-column", "label", "--model-config", MLP, "--clients", 6,
            "--fraction", "0.5", "--rounds", 4, "--local-epochs", 1, "--batch", 8, "--partition", "dirichlet:alpha=0.5",
            "--inner-optimizer", "sgd:lr=0.1", "--seed", 3, "--strategy", "scaffold", "--drop-rate", "0.3",
            "--min-completion", "0.6", "--threads", 1]
    fast = ["--store-poll", "1", "--store-timeout", "120"]

    def sites(tag):
        store = ["--store", f"loco:loco/{tag}", *fast]
        return ([*opts, "-o", work / tag / "agg", *store, "--role", "aggregator"],
                [*opts, "-o", work / tag / "siteA", *store, "--role", "workers", "--site-workers", "0-2"],
                [*opts, "-o", work / tag / "siteB", *store, "--role", "workers", "--site-workers", "3-5"])

    # The one-folder run: the reference.
    shared = work / "shared"
    run([*opts, "-o", shared, "--jobs", 2], env)
    want = {f: checksum(bin_dir, shared / "rounds" / f, env) for f in ("round-0004.h5", "control-0004.h5")}
    ref = [json.loads(x) for x in (shared / "metrics.jsonl").read_text().splitlines()]
    check([r["skipped"] for r in ref[1:]] == [False, False, True, True], "the plans are not the ones this test expects")

    # Usage: client ids are 0..C-1; --late has no meaning here.
    p = run([*opts, "-o", work / "x", "--store", "loco:loco/x", "--role", "workers", "--site-workers", "6"], env, code=2)
    check("--site-workers: 6 is not within the run's 0..5" in p.stderr, p.stderr)
    p = run([*opts, "-o", work / "x", "--store", "loco:loco/x", "--role", "aggregator", "--late", "constant"], env, code=2)
    check("--late" in p.stderr and "min-completion" in p.stderr, p.stderr)
    check(not (work / "x").exists(), "a refused run wrote its folder")

    # 1. Three sites through the store: the one-folder run's model and c, bit for bit.
    agg, wa, wb = sites("clean")
    ps = [site(agg, env), site(wa, env), site(wb, env)]
    for p, what in zip(ps, ("aggregator", "site A", "site B")):
        finish(p, what, timeout=400)
    for f, c in want.items():
        got = checksum(bin_dir, work / "clean/agg/rounds" / f, env)
        check(got == c, f"store run's {f} {got} != one-folder run's {c}")
    recs = [json.loads(x) for x in (work / "clean/agg/metrics.jsonl").read_text().splitlines()]
    for r, (a, b) in enumerate(zip(recs, ref)):
        for k in ("loss", "accuracy", "sampled", "dropped", "finished", "skipped", "bytes_sent", "cum_bytes"):
            check(a.get(k) == b.get(k), f"round {r}: {k} {a.get(k)} != one-folder run's {b.get(k)}")
    for r in range(1, 5):
        st = recs[r]["store"]
        check(st["deltas"] == TRAINED[r] and st["missing"] == [] and st["refused"] == [], st)
        check(sorted(st["workers"]) == [str(i) for i in TRAINED[r]], st)
        for i in TRAINED[r]:
            # the model (without server state) and c down, the delta and the control delta up
            check(st["workers"][str(i)]["bytes_up"] > 0 and st["workers"][str(i)]["bytes_down"] >= 0, st)
        man = json.loads((work / f"clean/agg/rounds/round-{r - 1:04d}.manifest.json").read_text())
        check(man["plan"]["round"] == r and man["plan"]["trained"] == TRAINED[r] and "control" in man["objects"], man)
    check("plan" not in json.loads((work / "clean/agg/rounds/round-0004.manifest.json").read_text()), "a plan after the last round")
    # Each site trained only its own sampled clients that were not dropped.
    for tag, mine in (("siteA", {0, 1, 2}), ("siteB", {3, 4, 5})):
        for r in range(1, 5):
            have = {int(p.stem.split("-")[1]) for p in (work / "clean" / tag / f"clients/round-{r:04d}").glob("client-*.h5")
                    if not p.stem.endswith(".control")}
            check(have == mine & set(TRAINED[r]), f"{tag}, round {r}: trained {sorted(have)}")
    keys = set(s3.objects("clean/"))
    check({"clean/round-0002/worker-3.json", "clean/round-0004/worker-2.json", "clean/round-0004/model.json"} <= keys
          and not any(k.startswith("clean/round-0003/worker-") for k in keys), sorted(keys))

    # 2. Site A killed (kill -9) in round 2, as soon as client 0 (its one client of the round) has
    # the model it starts from, then rerun: the same model.
    agg, wa, wb = sites("kill")
    pa, pw1, pw2 = site(agg, env), site(wa, env), site(wb, env)
    r2 = work / "kill/siteA/clients/round-0002"
    wait_for(lambda: (work / "kill/siteA/rounds/round-0001.h5").exists(), "client 0 in round 2", 300)
    kill9(pw1)
    check(not (r2 / "client-0.manifest.json").exists(), "site A was killed after its round")
    pw1 = site(wa, env)
    for p, what in ((pa, "aggregator"), (pw1, "site A rerun"), (pw2, "site B")):
        finish(p, what, timeout=400)
    for f, c in want.items():
        got = checksum(bin_dir, work / "kill/agg/rounds" / f, env)
        check(got == c, f"after the kill, {f} {got} != {c}")
    log = (work / "kill/agg/commands.log").read_text()
    n = log.count("loco-aggregate --model")
    check(n == 4, f"{n} runs of loco-aggregate; 2 rounds aggregate, each the model and c")
    uploads = (work / "kill/siteA/commands.log").read_text()
    check(uploads.count("round-0002/worker-0.json") == 1, "client 0's round 2 was published more than once")


if __name__ == "__main__":
    sys.exit(store_main("test_store_fedavg", __doc__, "work-store-fedavg", tests))
