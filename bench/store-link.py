#!/usr/bin/python3
"""The link model of scripts/report --link checked against real transfers (issue 15).

A DiLoCo run of the aggregator and two worker sites linked only through an S3 server (s3rver on
127.0.0.1, as tests/pipeline/test_store.py starts it), first with no limit, then with the worker
sites behind rclone --bwlimit at each RATE. The measured time is the span between the
aggregator's publications of the models of round 0 and of the last round (the manifests' mtimes).
The model (scripts/lib/linkmodel.py) predicts it from the run's records: per round the slowest
worker's compute, the aggregation, the bytes the worker sites moved at RATE, and 2 x LAT, the
fixed cost of one exchange on this link (rclone's start, S3 requests, the 1-second polls), which
the unlimited run calibrates: LAT = (its span - its compute and aggregation) / (2 x rounds).
Prints one line per run: measured, modelled, and the relative error; exit 1 when an error is
15% or more (the issue's target).

Run it on a quiet machine: the fixed cost LAT is calibrated once and assumed the same in every run.
Usage: bench/store-link.py [--bin BUILD/bin] [--work DIR] [--rates 256k,1M] [--rounds 4]
                           [--preset gpt-d128-l4]  (3.5 MB models: transfers dominate at these rates)
"""
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "pipeline"))
sys.path.insert(0, str(ROOT / "scripts" / "lib"))
import linkmodel  # noqa: E402
from pipetest import SCRIPTS, make_text  # noqa: E402
from storetest import S3, finish, s3_env, s3rver_bin, site  # noqa: E402  the tests' s3rver on 127.0.0.1

RCLONE_UNITS = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def rate_bytes(text):
    """rclone's --bwlimit RATE ('64k', '1M': binary units, bytes per second) in bytes/s."""
    t = text.strip().lower()
    return float(t[:-1]) * RCLONE_UNITS[t[-1]] if t[-1] in RCLONE_UNITS else float(t)


def one_run(work, tag, opts, env, bwlimit):
    store = f"loco:loco/{tag}"
    fast = ["--store-poll", "1", "--store-timeout", "600"]
    limit = ["--bwlimit", bwlimit] if bwlimit else []
    agg = [SCRIPTS / "diloco", *opts, "-o", work / tag / "agg", "--store", store, "--role", "aggregator", *fast]
    sites = [[SCRIPTS / "diloco", *opts, "-o", work / tag / f"site{w}", "--store", store, "--role", "workers",
              "--site-workers", str(w), *fast, *limit] for w in (1, 2)]
    ps = [site(agg, env)] + [site(s, env) for s in sites]
    for p, what in zip(ps, ("aggregator", "site 1", "site 2")):
        finish(p, f"{tag}: {what}", timeout=1800)
    rows = [json.loads(x) for x in (work / tag / "agg/metrics.jsonl").read_text().splitlines()]
    last = rows[-1]["round"]
    mt = lambda r: (work / tag / f"agg/rounds/round-{r:04d}.manifest.json").stat().st_mtime_ns / 1e9
    return rows, mt(last) - mt(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=ROOT / "build" / "bin")
    ap.add_argument("--work", type=Path, default=Path("/tmp/loco-store-link"))
    ap.add_argument("--rates", default="256k,1M")
    ap.add_argument("--preset", default="gpt-d128-l4")
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    exe = s3rver_bin()
    if exe is None:
        sys.exit("store-link: s3rver is not installed (scripts/setup-test-services installs it)")
    work = a.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    text = work / "text.txt"
    make_text(text)
    opts = ["--data", text, "--preset", a.preset, "--workers", "2", "--rounds", str(a.rounds), "--inner-steps", "4",
            "--batch", "4", "--lr", "3e-3", "--eval-batch", "16", "--threads", "1", "--tools", a.bin.resolve()]
    s3 = S3(exe, work / "s3")
    env = s3_env(dict(os.environ, LOCO_THREADS="1"), work, s3)
    try:
        rows, span = one_run(work, "unlimited", opts, env, None)
        trained = [r for r in rows if r["round"] > 0]
        base = sum(linkmodel.round_seconds(r, "diloco", float("inf"), 0.0) for r in trained)
        lat = max(0.0, (span - base) / (2 * len(trained)))
        print(f"unlimited: span {span:.1f} s, compute and aggregation {base:.1f} s over {len(trained)} rounds: "
              f"LAT = {lat:.3f} s per direction")
        worst = 0.0
        for rate in a.rates.split(","):
            rows, span = one_run(work, f"bw-{rate}", opts, env, rate)
            bw = rate_bytes(rate)
            model = linkmodel.timeline(rows, "diloco", bw, lat)[-1]
            err = (model - span) / span
            worst = max(worst, abs(err))
            moved = max(w["bytes_up"] + w["bytes_down"] for r in rows if r["round"] > 0
                        for w in r["store"]["workers"].values())
            print(f"--bwlimit {rate}: measured {span:.1f} s, modelled {model:.1f} s ({100 * err:+.1f}%); "
                  f"up to {moved} bytes a round per worker")
    finally:
        s3.stop()
    print(f"largest error {100 * worst:.1f}% (target < 15%)")
    return 0 if worst < 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
