"""Across sites (docs/store.md): the aggregator and two worker sites in three folders, linked only
through an S3 server (s3rver, started here on 127.0.0.1; installed by scripts/setup-test-services),
rclone configured by environment variables only.

- 3 rounds of DiLoCo through the store end with the model of the one-folder run, bit for bit, and
  metrics.jsonl records the bytes moved and the seconds waited per worker and round;
- faults: a worker site killed (kill -9, its whole process group) in round 2 and rerun, and the
  aggregator killed between round 2's model object and its manifest and rerun: the same final model;
- a corrupted object (one byte of a delta changed in the store): refused by its checksum, named,
  and the round proceeds at the quorum; a worker that never arrives: the deadline and the quorum;
- the fake secret key appears in no file of the run folders, and no rclone config file is written.
Fails, naming it, when s3rver is not installed (nothing is skipped)."""
import json
import os
import re
import signal
import sys

from pipetest import SCRIPTS, check, make_text, run
from storetest import SECRET, checksum, finish, kill9, site, store_main, wait_for


def tests(bin_dir, work, env, s3):
    text = work / "text.txt"
    make_text(text)
    diloco = SCRIPTS / "diloco"
    opts = ["--data", text, "--preset", "gpt-tiny", "--workers", "2", "--rounds", "3", "--inner-steps", "4",
            "--batch", "4", "--lr", "3e-3", "--eval-batch", "16", "--threads", "1"]
    fast = ["--store-poll", "1", "--store-timeout", "120"]

    def sites(tag, **kw):
        store = f"loco:loco/{tag}"
        agg = [diloco, *opts, "-o", work / tag / "agg", "--store", store, "--role", "aggregator", *fast]
        wa = [diloco, *opts, "-o", work / tag / "siteA", "--store", store, "--role", "workers",
              "--site-workers", "1", *fast]
        wb = [diloco, *opts, "-o", work / tag / "siteB", "--store", store, "--role", "workers",
              "--site-workers", "2", *fast]
        return agg, wa, wb

    # The one-folder run: the reference.
    run([diloco, *opts, "-o", work / "shared", "--jobs", "2"], env)
    want = checksum(bin_dir, work / "shared/rounds/round-0003.h5", env)

    # Usage: credentials in the remote string are refused, the roles need their options.
    p = run([diloco, *opts, "-o", work / "x", "--store", f":s3,secret_access_key={SECRET}:loco/x",
             "--role", "aggregator"], env, code=2)
    check("connection strings" in p.stderr and SECRET not in p.stderr, p.stderr)
    run([diloco, *opts, "-o", work / "x", "--store", "loco:loco/x"], env, code=2)
    run([diloco, *opts, "-o", work / "x", "--store", "loco:loco/x", "--role", "workers"], env, code=2)
    p = run([diloco, *opts, "-o", work / "x", "--store", "loco:loco/x", "--role", "workers",
             "--site-workers", "3"], env, code=2)
    check("--site-workers: 3 is not within the run's 1..2" in p.stderr, p.stderr)
    run([diloco, *opts, "-o", work / "x", "--keep-rounds", "2"], env, code=2)
    check(not (work / "x").exists(), "a refused run wrote its folder")

    # 1. Fault-free: three sites through the store, the one-folder run's model bit for bit.
    agg, wa, wb = sites("clean")
    ps = [site(agg, env), site(wa, env), site(wb, env)]
    for p, what in zip(ps, ("aggregator", "site A", "site B")):
        finish(p, what)
    got = checksum(bin_dir, work / "clean/agg/rounds/round-0003.h5", env)
    check(got == want, f"store run {got} != one-folder run {want}")
    recs = [json.loads(x) for x in (work / "clean/agg/metrics.jsonl").read_text().splitlines()]
    check([r["round"] for r in recs] == [0, 1, 2, 3], recs)
    shared = [json.loads(x) for x in (work / "shared/metrics.jsonl").read_text().splitlines()]
    check([r["loss"] for r in recs] == [r["loss"] for r in shared], "held-out losses differ from the one-folder run")
    for r in recs[1:]:
        st = r["store"]
        check(st["deltas"] == [1, 2] and st["missing"] == [] and st["late"] == [], st)
        for w in ("1", "2"):
            ws = st["workers"][w]
            # a worker downloads the model without the outer state: less than the aggregator's file
            check(0 < ws["bytes_down"] < (work / "clean/agg/rounds/round-0000.h5").stat().st_size * 2
                  and ws["bytes_up"] > 0 and ws["wait_seconds"] >= 0, ws)
        check(st["aggregator"]["bytes_down"] > 0 and st["aggregator"]["bytes_up"] > 0, st)
    model3 = work / "clean/agg/rounds/round-0003.h5"
    view_bytes = json.loads((work / "clean/agg/rounds/round-0003.manifest.json").read_text())["bytes"]
    check(view_bytes < model3.stat().st_size * 0.75, f"the workers' model ({view_bytes} B) still holds the outer state")
    keys = set(s3.objects("clean/"))
    check({"clean/config.txt", "clean/round-0003/model.json", "clean/round-0001/worker-2.json"} <= keys, sorted(keys))
    check(not (work / "clean/siteA/deltas/round-0001/worker-2.h5").exists(), "site A made worker 2's delta")
    # A rerun of every site does nothing new.
    before = (work / "clean/agg/commands.log").read_text().count(" run ")
    ps = [site(agg, env), site(wa, env), site(wb, env)]
    for p, what in zip(ps, ("aggregator rerun", "site A rerun", "site B rerun")):
        finish(p, what)
    log = (work / "clean/agg/commands.log").read_text().splitlines()[before:]
    check(not any("loco-aggregate" in x or "loco-worker" in x or "copyto" in x for x in log), log)
    # Another site's options are refused.
    p = run([diloco, *opts, "--inner-steps", "5", "-o", work / "clean/siteC", "--store", "loco:loco/clean",
             "--role", "workers", "--site-workers", "1", *fast], env, code=2)
    check("other options" in p.stderr and "inner_steps" in p.stderr, p.stderr)

    # 2. Faults: site A killed in round 2, the aggregator killed between round 2's object and
    # its manifest; both rerun. The final model is the fault-free one.
    agg, wa, wb = sites("faults")
    pa, pw1, pw2 = site(agg, env), site(wa, env), site(wb, env)
    state2 = work / "faults/siteA/deltas/round-0002"
    wait_for(lambda: (state2 / ".worker-1.state.h5").exists() or (state2 / "worker-1.h5").exists(),
             "site A in round 2")
    kill9(pw1)
    check(not (state2 / "worker-1.manifest.json").exists(), "site A was killed after its round")
    pw1 = site(wa, env)
    # the aggregator: as soon as round 2's model object is in the store (its manifest comes after)
    wait_for(lambda: any(k.startswith("faults/round-0002/model-") for k in s3.objects("faults/round-0002/")),
             "round 2's model object")
    kill9(pa)
    check("faults/round-0002/model.json" not in s3.objects("faults/round-0002/"),
          "the aggregator was killed after the manifest (too slow to catch the window)")
    check((work / "faults/agg/rounds/round-0002.h5").exists(), "round 2's model was not made before the kill")
    pa = site(agg, env)
    finish(pa, "aggregator rerun")
    finish(pw1, "site A rerun")
    finish(pw2, "site B")
    got = checksum(bin_dir, work / "faults/agg/rounds/round-0003.h5", env)
    check(got == want, f"after the faults {got} != {want}")
    recs = [json.loads(x) for x in (work / "faults/agg/metrics.jsonl").read_text().splitlines()]
    check([r["round"] for r in recs] == [0, 1, 2, 3] and all(r["store"]["deltas"] == [1, 2] for r in recs[1:]),
          "a round was lost or duplicated")
    log = (work / "faults/agg/commands.log").read_text()
    check(log.count("loco-aggregate") == 3, f"{log.count('loco-aggregate')} aggregations for 3 rounds")

    # 3. A corrupted object: worker 2's round-2 delta gets one byte changed in the store while the
    # aggregator is stopped; it is refused by its checksum, named, and round 2 proceeds at the
    # quorum (--min-deltas 1) with worker 1's delta alone.
    agg, wa, wb = sites("corrupt")
    agg += ["--min-deltas", "1"]
    wa += ["--min-deltas", "1"]
    wb += ["--min-deltas", "1", "--bwlimit", "50M"]
    pa, pw1, pw2 = site(agg, env), site(wa, env), site(wb, env)
    wait_for(lambda: "corrupt/round-0001/model.json" in s3.objects("corrupt/round-0001/"), "round 1's model")
    os.killpg(pa.pid, signal.SIGSTOP)
    wait_for(lambda: {"corrupt/round-0002/worker-1.json", "corrupt/round-0002/worker-2.json"}
             <= set(s3.objects("corrupt/round-0002/")), "round 2's deltas")
    obj = [p for k, p in s3.objects("corrupt/round-0002/").items() if re.search(r"/worker-2-[0-9a-f]{16}\.h5$", k)]
    check(len(obj) == 1, obj)
    data = bytearray(obj[0].read_bytes())
    data[len(data) // 2] ^= 0x01
    obj[0].write_bytes(bytes(data))
    os.killpg(pa.pid, signal.SIGCONT)
    err = finish(pa, "aggregator (corrupt)")
    finish(pw1, "site A (corrupt)")
    finish(pw2, "site B (corrupt)")
    check(re.search(r"round 2: round-0002/worker-2-[0-9a-f]{16}\.h5 in the store has sha256 [0-9a-f]{64}, its manifest says", err)
          and "round 2: aggregating without workers 2" in err, err[-3000:])
    recs = [json.loads(x) for x in (work / "corrupt/agg/metrics.jsonl").read_text().splitlines()]
    check(recs[2]["store"]["deltas"] == [1] and recs[2]["store"]["refused"] == [2], recs[2]["store"])
    check(recs[1]["store"]["deltas"] == [1, 2] and recs[3]["store"]["deltas"] == [1, 2], "rounds 1 and 3 are complete")
    # round 1 was complete: the same model as the one-folder run's round 1
    check(checksum(bin_dir, work / "corrupt/agg/rounds/round-0001.h5", env)
          == checksum(bin_dir, work / "shared/rounds/round-0001.h5", env), "round 1 differs")

    # 4. A worker that never arrives: 3 workers, worker 3's site is never started; the deadline
    # (2 s) and the quorum (2) let every round proceed without it, naming it; --keep-rounds 1 leaves
    # only the last round in the store.
    o3 = [*opts, "--workers", "3", "--min-deltas", "2", "--rounds", "2"]
    store = "loco:loco/quorum"
    agg = [diloco, *o3, "-o", work / "quorum/agg", "--store", store, "--role", "aggregator", *fast,
           "--round-deadline", "2", "--keep-rounds", "1"]
    wa = [diloco, *o3, "-o", work / "quorum/siteA", "--store", store, "--role", "workers",
          "--site-workers", "1-2", *fast, "--keep-rounds", "1"]
    pa, pw = site(agg, env), site(wa, env)
    err = finish(pa, "aggregator (quorum)")
    finish(pw, "site A (quorum)")
    check(err.count("aggregating without workers 3") == 2, err[-3000:])
    recs = [json.loads(x) for x in (work / "quorum/agg/metrics.jsonl").read_text().splitlines()]
    check(all(r["store"]["deltas"] == [1, 2] and r["store"]["missing"] == [3] for r in recs[1:]), recs)
    rounds_left = {k.split("/")[1] for k in s3.objects("quorum/") if k.startswith("quorum/round-")}
    check(rounds_left == {"round-0002"}, sorted(rounds_left))
    check(not (work / "quorum/siteA/rounds/round-0000.h5").exists(), "site A kept round 0's model")

    p = run([diloco, *opts, "-o", work / "slurm", "--store", "loco:loco/slurm", "--role", "workers",
             "--site-workers", "1,2", "--executor", "slurm", "--dry-run"], env)
    check("--array=1,2" in p.stderr and "--step store-worker" in p.stderr and SECRET not in p.stderr, p.stderr[-2000:])


if __name__ == "__main__":
    sys.exit(store_main("test_store", __doc__, "work-store", tests))
