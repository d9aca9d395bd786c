#!/usr/bin/python3
"""End-to-end test of scripts/streaming-diloco on a tiny GPT (2 blocks, so P = 2 fragments).

Checks: usage errors (P not dividing H, TAU >= H/P, ALPHA outside [0, 1], streaming options given
to scripts/diloco); with P = 1, TAU = 0, ALPHA = 0 the final global model (tensors and outer
state) and every held-out loss are bit-identical to scripts/diloco's with the same options; with
P = 2, TAU = 1, ALPHA = 0.5: the layout, the token and byte accounting and peak_bytes_per_sync
(the larger fragment's delta), that the first synchronisation of fragment 0 is the Nesterov outer
step of the mean of the workers' fragment-0 deltas (recomputed with numpy), that fragment 1's file
is untouched by it and the deltas hold only fragment 0's tensors, that a rerun runs nothing, that
a deleted delta is recomputed bit for bit, that a run killed mid-way and rerun ends with the same
bytes of tensors; the report accepts the run; the Slurm --dry-run has one array per stage.

Usage: test_streaming.py --bin BUILD/bin [--work DIR] [--keep]
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

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipetest import Failure, SCRIPTS, check, log_lines, make_text, run, start, tree_digest  # noqa: E402


def datasets(path):
    """{dataset path: (dtype, shape, bytes)} of every dataset of an HDF5 file (tensors and state)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                v = obj[()]
                out[name] = (str(v.dtype), v.shape, v.tobytes())
        f.visititems(visit)
    return out


def group(path, name="tensors"):
    with h5py.File(path, "r") as f:
        return {k: f[name][k][()] for k in f[name]} if name in f else {}


def main():
    bin_dir, work, env, keep = start(__doc__, "/tmp/loco-streaming-test")
    streaming, diloco, report = SCRIPTS / "streaming-diloco", SCRIPTS / "diloco", SCRIPTS / "report"
    text = work / "text.txt"
    make_text(text)
    H, M, B, CTX, R = 6, 2, 4, 64, 2
    opts = ["--data", text, "--preset", "gpt-tiny", "--workers", str(M), "--rounds", str(R),
            "--inner-steps", str(H), "--batch", str(B), "--lr", "3e-3", "--test-fraction", "0.05",
            "--eval-batch", "16", "--jobs", "2"]
    sopts = opts + ["--fragments", "2", "--overlap", "1", "--mixing", "0.5"]
    t0 = time.time()
    steps = []

    def step(name):
        steps.append(name)
        print(f"[{time.time() - t0:6.1f}s] {name}", flush=True)

    step("help and usage errors")
    p = run([streaming, "--help"], env)
    check("Usage" in p.stdout and "--fragments P" in p.stdout and "--overlap TAU" in p.stdout, p.stdout)
    for bad, needle in ((["--fragments", "4"], "must divide --inner-steps 6"),
                        (["--fragments", "2", "--overlap", "3"], "[0, H/P) = [0, 3)"),
                        (["--mixing", "1.5"], "--mixing must be a number in [0, 1]"),
                        (["--fragments", "0"], "--fragments must be a positive integer")):
        p = run([streaming, *opts, *bad, "-o", work / "x"], env, code=2)
        check(needle in p.stderr and p.stderr.startswith("streaming-diloco: error:"), p.stderr)
    p = run([diloco, *opts, "--fragments", "2", "-o", work / "x"], env, code=2)
    check("an option of scripts/streaming-diloco" in p.stderr, p.stderr)
    check(not (work / "x").exists(), "a usage error created the output folder")

    step("P = 1, TAU = 0, ALPHA = 0 is DiLoCo, bit for bit")
    dl, s1 = work / "dl", work / "s1"
    run([diloco, *opts, "-o", dl], env)
    run([streaming, *opts, "--fragments", "1", "-o", s1], env)
    for r in range(R + 1):
        a_, b_ = datasets(s1 / f"rounds/round-{r:04d}.h5"), datasets(dl / f"rounds/round-{r:04d}.h5")
        check(a_ == b_, f"round {r}: the joined streaming model differs from DiLoCo's (tensors or outer state)")
    check(datasets(s1 / f"fragments/frag-0/round-{R:04d}.h5") == datasets(dl / f"rounds/round-{R:04d}.h5"),
          "the one fragment's file is not DiLoCo's global model")
    check("state/momentum" in {k.rsplit("/", 1)[0] for k in datasets(s1 / f"rounds/round-{R:04d}.h5")},
          "the outer state was not joined")
    srows = [json.loads(l) for l in (s1 / "metrics.jsonl").read_text().splitlines()]
    drows = [json.loads(l) for l in (dl / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss", "tokens", "cum_bytes_per_worker", "peak_bytes_per_sync", "step"):
        check([r[key] for r in srows] == [r[key] for r in drows], f"metric {key} differs from DiLoCo's")

    step("P = 2, TAU = 1, ALPHA = 0.5: layout and accounting")
    s2 = work / "s2"
    run([streaming, *sopts, "-o", s2], env)
    stages = R * 2
    for rel in (["config.txt", "metrics.jsonl", "rounds/round-0000.h5", f"rounds/round-{R:04d}.h5"]
                + [f"fragments/frag-{p}/round-{j:04d}.h5" for p in (0, 1) for j in range(R + 1)]
                + [f"deltas/stage-{k:04d}/worker-{w}.{e}" for k in range(1, stages + 1) for w in (1, 2)
                   for e in ("h5", "json", "steps.jsonl")]
                + [f"{d}/worker-{w}/stage-{k:04d}.h5" for d in ("local", "state") for k in range(1, stages + 1)
                   for w in (1, 2)]):
        check((s2 / rel).is_file(), f"missing {rel}")
    check(not [p.name for p in s2.rglob(".*") if p.is_file()], "temporary files left")
    check("fragments=2\noverlap=1\nmixing=0.5" in (s2 / "config.txt").read_text(), "config.txt lacks the streaming options")
    rows = [json.loads(l) for l in (s2 / "metrics.jsonl").read_text().splitlines()]
    check([r["round"] for r in rows] == list(range(R + 1)), "one record a round")
    check(rows[R]["tokens"] == R * M * H * B * CTX, f"tokens {[r['tokens'] for r in rows]}")
    check(rows[R]["step"] == R * H, "the cumulative inner step")
    model_bytes = rows[0]["model_bytes"]
    frag_bytes = [sum(v.size * 4 for v in group(s2 / f"fragments/frag-{p}/round-0000.h5").values()) for p in (0, 1)]
    check(sum(frag_bytes) == model_bytes, f"fragments {frag_bytes} do not add up to the model {model_bytes}")
    check(all(r["peak_bytes_per_sync"] == max(frag_bytes) for r in rows[1:]),
          f"peak_bytes_per_sync {[r['peak_bytes_per_sync'] for r in rows]} != larger fragment {max(frag_bytes)}")
    check(rows[1]["bytes_sent_per_worker"] == model_bytes and rows[R]["cum_bytes_per_worker"] == 2 * R * model_bytes,
          "a worker sends every fragment's delta and receives every fragment once a round")
    check(rows[R]["loss"] < rows[0]["loss"], "the held-out loss did not fall")
    check(len((s2 / "deltas/stage-0001/worker-1.steps.jsonl").read_text().splitlines()) == H // 2, "H/P steps a stage")

    step("the first sync of fragment 0 is the outer Nesterov step of the mean fragment delta")
    g0 = group(s2 / "fragments/frag-0/round-0000.h5")
    d = [group(s2 / f"deltas/stage-0001/worker-{w}.h5") for w in (1, 2)]
    check(all(set(x) == set(g0) for x in d), "the stage-1 deltas must hold exactly fragment 0's tensors")
    with h5py.File(s2 / "deltas/stage-0001/worker-1.h5", "r") as f:
        check(f.attrs["fragment"] == 0 and f.attrs["overlap"] == 1, dict(f.attrs))
    new, mom = group(s2 / "fragments/frag-0/round-0001.h5"), group(s2 / "fragments/frag-0/round-0001.h5", "state/momentum")
    lr, mu = 0.7, 0.9
    for k in g0:
        mean = ((d[0][k].astype(np.float64) + d[1][k].astype(np.float64)) / 2).astype(np.float32)
        # m0 = 0: m = mean; theta - lr*(mean + mu*m). Each of the few float32 roundings is within
        # 2^-24 relative of its operand, so 1e-6 relative (plus 1e-7 absolute near 0) bounds them.
        m = mean.astype(np.float64)
        want = g0[k].astype(np.float64) - lr * (m + mu * m)
        check(np.array_equal(mom[k], mean), f"{k}: the momentum is not the mean delta")
        check(np.allclose(new[k], want, rtol=1e-6, atol=1e-7), f"{k}: outer step off by {np.abs(new[k] - want).max()}")
    init = group(s2 / "rounds/round-0000.h5")
    g1 = group(s2 / "fragments/frag-1/round-0000.h5")
    check(not set(g1) & set(g0) and all(g1[k].tobytes() == init[k].tobytes() for k in g1),
          "fragment 1's file must hold the initial values until its own sync")
    check(all(g0[k].tobytes() == init[k].tobytes() for k in g0), "fragment 0's round-0 file is the initial model's")
    d2 = group(s2 / "deltas/stage-0002/worker-1.h5")
    check(set(d2) == set(g1), "stage 2 sends fragment 1")

    step("rerun is a no-op; a deleted delta is recomputed bit for bit")
    before, nlog = tree_digest(s2), len(log_lines(s2))
    run([streaming, *sopts, "-o", s2], env)
    check(tree_digest(s2) == before, "a rerun changed files")
    check(len(log_lines(s2)) == nlog, "a rerun ran tools")
    saved = datasets(s2 / "deltas/stage-0003/worker-2.h5")
    final = datasets(s2 / f"rounds/round-{R:04d}.h5")
    (s2 / "deltas/stage-0003/worker-2.h5").unlink()
    run([streaming, *sopts, "-o", s2], env)
    new_lines = log_lines(s2)[nlog:]
    check(len(new_lines) == 2 and "loco-worker" in new_lines[0], f"expected one worker run, got {new_lines}")
    check(datasets(s2 / "deltas/stage-0003/worker-2.h5") == saved, "the recomputed delta differs")
    check(datasets(s2 / f"rounds/round-{R:04d}.h5") == final, "the final model changed")

    step("a killed run, rerun, ends with the uninterrupted run's model")
    kd = work / "killed"
    proc = subprocess.Popen([str(c) for c in [streaming, *sopts, "-o", kd]], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (kd / "deltas/stage-0003").exists() and any((kd / "deltas/stage-0003").glob("worker-*.h5")):
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
    proc.wait()
    check(not (kd / f"rounds/round-{R:04d}.h5").exists() or proc.returncode == 0, "the kill came too late")
    run([streaming, *sopts, "-o", kd], env)
    check(datasets(kd / f"rounds/round-{R:04d}.h5") == final, "the resumed run's final model differs")
    for p in (0, 1):
        check(datasets(kd / f"fragments/frag-{p}/round-{R:04d}.h5") ==
              datasets(s2 / f"fragments/frag-{p}/round-{R:04d}.h5"), f"fragment {p} differs after resuming")
    kr = [json.loads(l)["loss"] for l in (kd / "metrics.jsonl").read_text().splitlines()]
    check(kr == [r["loss"] for r in rows], "the resumed run's held-out losses differ")
    p = run([streaming, *opts, "--fragments", "2", "-o", s2], env, code=2)
    check("overlap=1" in p.stderr and "overlap=0" in p.stderr, "other options on an existing folder must be refused")

    step("report and Slurm --dry-run")
    p = run([report, s2, dl, "--no-plots", "-o", work / "rep"], env)
    md = (work / "rep/report.md").read_text()
    check(f"| s2 (streaming-diloco) | {R} |" in md and "peak bytes/sync" in md, md)
    p = run([streaming, *sopts, "-o", work / "sl", "--executor", "slurm", "--dry-run"], env)
    check(p.stderr.count("--array=1-2") == stages, "one worker array per stage")
    check(f"--step aggregate --stage {stages}" in p.stderr and "afterok:<" in p.stderr, p.stderr[-1500:])
    p = run([streaming, *sopts, "-o", work / "sl", "--executor", "slurm-loop", "--dry-run"], env)
    check(f"r <= {stages}" in p.stderr and "--stage" in p.stderr, p.stderr[-1500:])
    check(not (work / "sl").exists(), "--dry-run wrote files")

    step("--codec quant:bits=4: fragment deltas travel compressed, bytes are their payload")
    run([streaming, *sopts, "--codec", "quant:bits=4", "-o", work / "s4"], env)
    rows4 = [json.loads(l) for l in (work / "s4/metrics.jsonl").read_text().splitlines()]
    for r4, r2 in zip(rows4[1:], rows[1:]):
        # 4 bits per element plus a float32 scale and offset per 256-element block, against 32 bits
        check(r2["bytes_sent_per_worker"] / 8 <= r4["bytes_sent_per_worker"] < r2["bytes_sent_per_worker"] / 6,
              f"round {r4['round']}: {r4['bytes_sent_per_worker']} bytes against {r2['bytes_sent_per_worker']} dense")
    check(abs(rows4[-1]["loss"] - rows[-1]["loss"]) < 0.05 * rows[-1]["loss"],
          f"4-bit loss {rows4[-1]['loss']} far from the dense run's {rows[-1]['loss']}")
    p = run([streaming, *sopts, "--codec", "quant:bits=4", "--ef", "ef14", "-o", work / "s5"], env, code=2)
    check("streaming takes --codec" in p.stderr, p.stderr)

    print(f"ok: {len(steps)} groups of checks in {time.time() - t0:.1f}s")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
