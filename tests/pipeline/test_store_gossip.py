"""Gossip across sites (docs/store.md, scripts/gossip --store): the merge site and two node sites in
three folders, linked only through an S3 server (s3rver on 127.0.0.1, started here), rclone
configured by environment variables only.

4 nodes on a ring for 3 rounds, mixing in rounds 2 and 3 only (--gossip late:from=0.5); nodes 0-1 at
site A, 2-3 at site B: every node's model of the last round and the final merge are those of the
one-folder run, bit for bit, and so is every round's record (local, merged and consensus metrics,
bytes); a node publishes its local model only in the rounds that mix and its model every round,
and a site fetches its nodes' neighbours' only then; a rerun of every site does nothing new;
--round-deadline is refused; no secret reaches a run folder.
Fails, naming it, when s3rver is not installed (nothing is skipped)."""
import json
import sys

from pipetest import SCRIPTS, check, make_classes, run
from storetest import checksum, finish, site, store_main

GOSSIP = SCRIPTS / "gossip"
MLP = '{"arch":"mlp","sizes":[3,8,4]}'


def tests(bin_dir, work, env, s3):
    make_classes(work / "d.csv", 600, 3)
    opts = [GOSSIP, "--data", work / "d.csv", "--label-column", "label", "--model-config", MLP, "--nodes", 4,
            "--rounds", 3, "--inner-steps", 5, "--batch", 16, "--partition", "dirichlet:alpha=0.5",
            "--topology", "ring", "--gossip", "late:from=0.5", "--threads", 1]
    store = ["--store", "loco:loco/g", "--store-poll", "1", "--store-timeout", "120"]
    agg = [*opts, "-o", work / "agg", *store, "--role", "aggregator"]
    wa = [*opts, "-o", work / "siteA", *store, "--role", "workers", "--site-workers", "0,1"]
    wb = [*opts, "-o", work / "siteB", *store, "--role", "workers", "--site-workers", "2-3"]

    shared = work / "shared"
    run([*opts, "-o", shared, "--jobs", 2], env)

    p = run([*opts, "-o", work / "x", *store, "--role", "aggregator", "--round-deadline", "5"], env, code=2)
    check("--round-deadline" in p.stderr and "neighbour" in p.stderr, p.stderr)
    check(not (work / "x").exists(), "a refused run wrote its folder")

    ps = [site(agg, env), site(wa, env), site(wb, env)]
    for p, what in zip(ps, ("merge site", "site A", "site B")):
        finish(p, what, timeout=400)
    want = checksum(bin_dir, shared / "merged/final.h5", env)
    got = checksum(bin_dir, work / "agg/merged/final.h5", env)
    check(got == want, f"the store run's final merge {got} != the one-folder run's {want}")
    for i, tag in ((0, "siteA"), (1, "siteA"), (2, "siteB"), (3, "siteB")):
        ref = checksum(bin_dir, shared / f"nodes/round-0003/node-{i}.h5", env)
        check(checksum(bin_dir, work / tag / f"nodes/round-0003/node-{i}.h5", env) == ref, f"node {i} at {tag} differs")
        check(checksum(bin_dir, work / f"agg/nodes/round-0003/node-{i}.h5", env) == ref, f"node {i} at the merge site differs")
    recs = [json.loads(x) for x in (work / "agg/metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (shared / "metrics.jsonl").read_text().splitlines()]
    check(len(recs) == 4, recs)
    for r, (a, b) in enumerate(zip(recs, ref)):
        for k in ("local_loss", "local_accuracy", "merged_loss", "consensus_distance", "train_loss", "gossip",
                  "cum_bytes_received_per_node"):
            check(a.get(k) == b.get(k), f"round {r}: {k} {a.get(k)} != the one-folder run's {b.get(k)}")
    for r in (1, 2, 3):
        st = recs[r]["store"]
        check(st["deltas"] == [0, 1, 2, 3] and st["missing"] == [] and sorted(st["workers"]) == ["0", "1", "2", "3"], st)
        check(all(w["bytes_up"] > 0 for w in st["workers"].values()), st)
        check(st["aggregator"]["bytes_down"] > 0, st)
    keys = set(s3.objects(""))
    check({f"g/round-0001/node-{i}.json" for i in range(4)} <= keys, sorted(keys))
    check(not any(k.startswith("g/round-0001/local-") for k in keys), "round 1 does not mix, yet local models were published")
    check({f"g/round-000{r}/local-{i}.json" for r in (2, 3) for i in range(4)} <= keys, sorted(keys))
    # Site A (nodes 0, 1) fetches its nodes' neighbours (3 and 2 on the ring) in the rounds that mix only.
    for r, want in ((1, {0, 1}), (2, {0, 1, 2, 3})):
        have = {int(p.stem.split("-")[1]) for p in (work / f"siteA/local/round-{r:04d}").glob("node-*.h5")}
        check(have == want, f"round {r}: site A has the local models of nodes {sorted(have)}")

    # A rerun of every site does nothing new.
    logs = {t: (work / t / "commands.log").read_text().count("\n") for t in ("agg", "siteA", "siteB")}
    ps = [site(agg, env), site(wa, env), site(wb, env)]
    for p, what in zip(ps, ("merge site rerun", "site A rerun", "site B rerun")):
        finish(p, what, timeout=400)
    for t, n in logs.items():
        new = (work / t / "commands.log").read_text().splitlines()[n:]
        check(not any("loco-worker" in x or "loco-gossip --topology" in x or "copyto" in x for x in new), (t, new))


if __name__ == "__main__":
    sys.exit(store_main("test_store_gossip", __doc__, "work-store-gossip", tests))
