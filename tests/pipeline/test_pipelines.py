#!/usr/bin/python3
"""End-to-end test of scripts/diloco, scripts/baseline and scripts/report on a tiny GPT run.

Checks: the output layout; a rerun runs no tool and changes no file; a deleted delta of the last
round is recomputed bit for bit; a run killed mid-way and rerun ends with the same final model
as the uninterrupted one (loco-inspect --diff exit 0, equal checksums); the baseline sees the same
tokens and held-out text and is charged H times DiLoCo's bytes; with --ef econtrol the aggregator's
per-worker estimates are kept per round and a rerun of round 2 leaves round 1's as they were; the
report and plots are written;
usage errors exit 2; a failing tool is named; --dry-run prints the Slurm batch scripts.

Usage: test_pipelines.py --bin BUILD/bin [--work DIR] [--keep]
Exit: 0 passed, 1 a check failed.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipetest import Failure, SCRIPTS, check, log_lines, make_text, run, start, tree_digest  # noqa: E402


def checksum(bin_dir, env, path):
    return run([bin_dir / "loco-inspect", "--checksum", "--json", path], env).stdout


def same_model(bin_dir, env, a, b):
    run([bin_dir / "loco-inspect", "--diff", a, b], env, code=0)
    ca, cb = json.loads(checksum(bin_dir, env, a)), json.loads(checksum(bin_dir, env, b))
    strip = lambda d: {k: v for k, v in d.items() if k not in ("file", "attributes")}
    check(strip(ca) == strip(cb), f"checksums of {a} and {b} differ")


def main():
    bin_dir, work, env, keep = start(__doc__, "/tmp/loco-pipeline-test")
    diloco, baseline, report = SCRIPTS / "diloco", SCRIPTS / "baseline", SCRIPTS / "report"
    text = work / "text.txt"
    make_text(text)
    opts = ["--data", text, "--preset", "gpt-tiny", "--workers", "2", "--rounds", "2",
            "--inner-steps", "5", "--batch", "4", "--lr", "3e-3", "--test-fraction", "0.05",
            "--eval-batch", "16", "--jobs", "2"]
    H, M, B, CTX = 5, 2, 4, 64
    t0 = time.time()
    steps = []

    def step(name):
        steps.append(name)
        print(f"[{time.time() - t0:6.1f}s] {name}", flush=True)

    step("help and usage errors")
    for s in (diloco, baseline, report):
        p = run([s, "--help"], env)
        check("Usage" in p.stdout or "usage" in p.stdout, f"{s.name} --help prints no usage")
    p = run([diloco, "--bogus", "1"], env, code=2)
    check("diloco: error: unknown option '--bogus'" in p.stderr, p.stderr)
    run([diloco, "--data", text, "-o", work / "x", "--workers", "0"], env, code=2)
    run([baseline, "--data", text, "-o", work / "x", "--outer", "sgd"], env, code=2)
    # NaN and infinities are refused before any tool runs (issue 19), alone or inside a spec.
    p = run([diloco, "--data", text, "-o", work / "x", "--lr", "nan"], env, code=2)
    check("diloco: error: --lr nan: not a finite number" in p.stderr, p.stderr)
    run([diloco, "--data", text, "-o", work / "x", "--inner-optimizer", "adamw:lr=-inf"], env, code=2)
    check(not (work / "x").exists(), "a usage error created the output folder")

    step("a failing tool is named and its exit code kept")
    p = run([diloco, *opts, "--preset", "no-such-preset", "-o", work / "bad"], env, code=None)
    check(p.returncode != 0 and "command failed" in p.stderr and "loco-init" in p.stderr, p.stderr)

    step("diloco: 2 workers, 2 rounds, H=5")
    dl = work / "dl"
    run([diloco, *opts, "-o", dl], env)
    for rel in ["config.txt", "metrics.jsonl", "commands.log", "shards/data-00001-of-00002.h5",
                "shards/data-00002-of-00002.h5", "shards/data-test.h5", "rounds/round-0000.h5",
                "rounds/round-0001.h5", "rounds/round-0002.h5", "metrics/round-0002.json"] + [
            f"deltas/round-{r:04d}/worker-{w}.{ext}" for r in (1, 2) for w in (1, 2)
            for ext in ("h5", "json", "steps.jsonl")] + [
            f"state/worker-{w}/round-{r:04d}.h5" for r in (1, 2) for w in (1, 2)]:
        check((dl / rel).is_file(), f"missing {rel}")
    leftovers = [p.name for p in dl.rglob(".*") if p.is_file()]
    check(not leftovers, f"temporary files left: {leftovers}")
    rows = [json.loads(l) for l in (dl / "metrics.jsonl").read_text().splitlines()]
    check([r["round"] for r in rows] == [0, 1, 2], "metrics.jsonl must hold rounds 0, 1, 2")
    check(rows[1]["tokens"] == M * H * B * CTX and rows[2]["tokens"] == 2 * M * H * B * CTX,
          f"tokens {[r['tokens'] for r in rows]}")
    model_bytes = rows[0]["model_bytes"]
    check(model_bytes > 0 and rows[2]["cum_bytes_per_worker"] == 4 * model_bytes,
          "diloco: a worker sends its delta and receives the model once a round")
    check(rows[2]["loss"] < rows[0]["loss"], "the held-out loss did not fall")
    steps_lines = (dl / "deltas/round-0002/worker-1.steps.jsonl").read_text().splitlines()
    check(len(steps_lines) == H, "the per-step metrics of a worker step hold H lines")

    step("rerun is a no-op")
    before, nlog = tree_digest(dl), len(log_lines(dl))
    run([diloco, *opts, "-o", dl], env)
    check(tree_digest(dl) == before, "a rerun changed files")
    check(len(log_lines(dl)) == nlog, "a rerun ran tools")

    step("a deleted delta is recomputed bit for bit")
    saved = work / "saved"
    saved.mkdir()
    shutil.copy(dl / "deltas/round-0002/worker-1.h5", saved / "delta.h5")
    shutil.copy(dl / "rounds/round-0002.h5", saved / "final.h5")
    (dl / "deltas/round-0002/worker-1.h5").unlink()
    run([diloco, *opts, "-o", dl], env)
    new = log_lines(dl)[nlog:]
    check(len(new) == 2 and "loco-worker" in new[0], f"expected one worker run (and its inspect), got {new}")
    same_model(bin_dir, env, saved / "delta.h5", dl / "deltas/round-0002/worker-1.h5")
    same_model(bin_dir, env, saved / "final.h5", dl / "rounds/round-0002.h5")

    step("a deleted final model and worker state are recomputed bit for bit")
    (dl / "rounds/round-0002.h5").unlink()
    (dl / "state/worker-2/round-0001.h5").unlink()
    run([diloco, *opts, "-o", dl], env)
    same_model(bin_dir, env, saved / "final.h5", dl / "rounds/round-0002.h5")
    check((dl / "state/worker-2/round-0001.h5").is_file(), "the deleted state was not remade")

    step("a killed run, rerun, ends with the uninterrupted run's model")
    kd = work / "killed"
    proc = subprocess.Popen([str(c) for c in [diloco, *opts, "-o", kd]], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any((kd / "deltas/round-0002").glob("worker-*.h5")) if (kd / "deltas/round-0002").exists() else False:
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
    proc.wait()
    check(not (kd / "rounds/round-0002.h5").exists() or proc.returncode == 0,
          "the kill came too late to interrupt anything")
    run([diloco, *opts, "-o", kd], env)
    same_model(bin_dir, env, dl / "rounds/round-0002.h5", kd / "rounds/round-0002.h5")
    kr = [json.loads(l)["loss"] for l in (kd / "metrics.jsonl").read_text().splitlines()]
    check(kr == [r["loss"] for r in rows], "the resumed run's held-out losses differ")

    step("QSR: rounds of the rule's lengths, the budget's steps, the schedule continued")
    qd = work / "qsr"
    qopts = [*opts[:opts.index("--rounds")], "--rounds", "4", "--inner-steps", "3",
             *[o for i, o in enumerate(opts) if i > opts.index("--inner-steps") + 1]]
    # Cosine with warm-up 1 over 12 steps at lr 3e-3: round 1 is H = 3 (warm-up), round 2 starts at
    # t = 3 with lr 2.77e-3: (0.01/2.77e-3)^2 = 13 > the 9 steps left.
    run([diloco, *qopts, "--sync-rule", "qsr:alpha=0.01", "-o", qd], env)
    qr = [json.loads(l) for l in (qd / "metrics.jsonl").read_text().splitlines()]
    check([r["round"] for r in qr] == [0, 1, 2] and [r["inner_steps"] for r in qr[1:]] == [3, 9], qr)
    w2 = json.loads((qd / "deltas/round-0002/worker-1.json").read_text())
    check(w2["step"] == 12 and w2["inner_steps"] == 9, w2)
    p = run([baseline, *qopts, "--sync-rule", "qsr:alpha=0.01", "-o", work / "x"], env, code=2)
    check("--sync-rule" in p.stderr, p.stderr)
    run([diloco, *qopts, "--sync-rule", "qsr:alpha=-1", "-o", work / "x"], env, code=2)

    step("a rerun with other options is refused")
    p = run([diloco, *opts, "--inner-steps", "6", "-o", dl], env, code=2)
    check("inner_steps=5" in p.stderr and "inner_steps=6" in p.stderr, p.stderr)

    step("econtrol: the aggregator's estimates per round, immutable; a deleted final model is remade")
    ec = work / "ec"
    eopts = [*opts, "--codec", "topk:density=0.1", "--ef", "econtrol:eta=0.5"]
    run([diloco, *eopts, "-o", ec], env)
    est = [ec / f"state/aggregator/round-{r:04d}" for r in (1, 2)]
    for d in est:
        files = sorted(f.name for f in d.glob("worker-*.h5"))
        check(any(f.startswith("worker-1-") for f in files) and any(f.startswith("worker-2-") for f in files),
              f"{d}: an estimate per worker expected, got {files}")
    r1 = tree_digest(est[0])
    shutil.copy(ec / "rounds/round-0002.h5", saved / "ec-final.h5")
    (ec / "rounds/round-0002.h5").unlink()
    run([diloco, *eopts, "-o", ec], env)
    same_model(bin_dir, env, saved / "ec-final.h5", ec / "rounds/round-0002.h5")
    check(tree_digest(est[0]) == r1, "rerunning round 2 changed round 1's estimates")
    check(not list(ec.rglob("*.work")), "a work folder of the estimates was left behind")

    step("baseline: one worker, global batch, same tokens and held-out text")
    bl = work / "bl"
    run([baseline, *opts, "-o", bl], env)
    brows = [json.loads(l) for l in (bl / "metrics.jsonl").read_text().splitlines()]
    check([r["tokens"] for r in brows] == [r["tokens"] for r in rows], "the baseline's tokens differ")
    check(brows[0]["loss"] == rows[0]["loss"], "round 0 must be the same model on the same held-out text")
    check(brows[1]["bytes_sent_per_worker"] == H * model_bytes, "baseline: H gradients a round")
    check(brows[2]["cum_bytes_per_worker"] == 2 * 2 * H * model_bytes, "baseline: cumulative bytes")
    check((bl / "shards/data-00001-of-00001.h5").is_file(), "the baseline's union shard is missing")
    check(brows[2]["loss"] < brows[0]["loss"], "the baseline's held-out loss did not fall")
    nb = len(log_lines(bl))
    run([baseline, *opts, "-o", bl], env)
    check(len(log_lines(bl)) == nb, "a baseline rerun ran tools")

    step("report")
    rep = work / "rep"
    have_mpl = subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"], capture_output=True).returncode == 0
    p = run([report, dl, "--baseline", bl, "-o", rep, "--link", "100Mbit:50ms", "--link", "10Gbit:1ms"]
            + ([] if have_mpl else ["--no-plots"]), env)
    md = (rep / "report.md").read_text()
    check("## Time at link speeds" in md and "| dl (diloco) | 100Mbit:50ms |" in md
          and "| bl (baseline) | 10Gbit:1ms |" in md, md)
    check("| dl (diloco) | 2 |" in md and "| bl (baseline) | 2 |" in md, md)
    check(f"{H:.1f}×" in md, "the reduction factor must be H")
    if have_mpl:
        check(all((rep / f).stat().st_size > 1000 for f in ("loss.svg", "loss.png", "time.svg", "time.png")),
              "plots missing")
    p = run([report, dl, "-o", rep, "--link", "100Mbps:50ms"], env, code=2)
    check("unknown bandwidth unit 'Mbps'" in p.stderr, p.stderr)
    run([report, work / "nowhere"], env, code=3)

    step("slurm --dry-run prints the batch scripts and writes nothing")
    sd = work / "slurm"
    p = run([diloco, *opts, "-o", sd, "--executor", "slurm", "--dry-run"], env)
    check(p.stderr.count("--array=1-2") == 2, "one worker array per round")
    check("afterok:<" in p.stderr and "--step aggregate --round 2" in p.stderr, p.stderr[-1500:])
    p = run([diloco, *opts, "-o", sd, "--executor", "slurm-loop", "--dry-run"], env)
    check("srun --ntasks=1 --exact" in p.stderr and "#SBATCH --ntasks=2" in p.stderr, p.stderr[-1500:])
    check(not sd.exists(), "--dry-run wrote files")

    print(f"ok: {len(steps)} groups of checks in {time.time() - t0:.1f}s")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
