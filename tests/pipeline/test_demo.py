#!/usr/bin/python3
"""End-to-end test of scripts/demo (DeMo: one step per round, 2-D DCT tile top-k of the workers'
decoupled momentum, contributor mean over DCT coefficients, outer sign step) on a tiny GPT.

Checks: help and the --inner-steps usage error; 2 workers x 3 rounds on generated text: the layout,
every delta a compressed dct_topk:...,tile=2d file whose lr attribute follows the cosine schedule
and which loco-aggregate was given as --outer-lr; that the global model after round 1 equals
theta*(1 - lr*wd) - lr*sign(IDCT(contributor mean of the workers' coefficients)) recomputed with
numpy from the workers' files (an independent tiling, DCT and scatter mean in float64); bytes per
round from payload_bytes; that a rerun runs nothing and changes no file.

Usage: test_demo.py --bin BUILD/bin [--work DIR] [--keep]
Exit: 0 passed, 1 a check failed.
"""
import json
import shutil
import sys
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipetest import Failure, SCRIPTS, check, log_lines, make_text, run, start, tensors, tree_digest  # noqa: E402


def split(n, chunk):
    """DeMo's tile length: the largest divisor of n that is at most chunk."""
    if n <= chunk:
        return n
    return max(s for s in range(1, chunk + 1) if n % s == 0)


def basis(n):
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (i + 0.5) * k / n) * np.sqrt(2.0 / n)
    c[0, :] = np.sqrt(1.0 / n)
    return c


def contributor_mean_idct(files, name, shape, chunk):
    """IDCT of the mean over contributors of the workers' kept coefficients of one tensor (float64)."""
    rows = shape[0] if len(shape) >= 2 else 1
    cols = int(np.prod(shape)) // rows
    s1, s2 = split(rows, chunk), split(cols, chunk)
    ty, tx = rows // s1, cols // s2
    tiles, tile = ty * tx, s1 * s2
    total = np.zeros((tiles, tile))
    count = np.zeros((tiles, tile))
    for f in files:
        with h5py.File(f, "r") as h:
            idx = h[f"tensors/{name}/indices"][()].astype(np.int64)
            val = h[f"tensors/{name}/values"][()].astype(np.float64)
        kept = len(idx) // tiles
        check(kept == min(32, tile), f"{f}: {name} keeps {kept} coefficients per tile, expected {min(32, tile)}")
        t = np.repeat(np.arange(tiles), kept)
        check(len(set(zip(t.tolist(), idx.tolist()))) == len(idx), f"{f}: {name}: an index repeats within a tile")
        np.add.at(total, (t, idx), val)
        np.add.at(count, (t, idx), 1.0)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0).reshape(ty, tx, s1, s2)
    c1, c2 = basis(s1), basis(s2)
    x = np.einsum("ab,yxac,cd->ybxd", c1, mean, c2)  # X = C1^T Y C2 per tile, back in place
    return x.reshape(shape), np.abs(mean).max()


def main():
    bin_dir, work, env, keep = start(__doc__, "/tmp/loco-demo-test")
    demo = SCRIPTS / "demo"
    text = work / "text.txt"
    make_text(text)
    M, R, LR, WD = 2, 3, 1e-2, 0.5
    opts = ["--data", text, "--preset", "gpt-tiny", "--workers", str(M), "--rounds", str(R), "--batch", "4",
            "--lr", str(LR), "--outer", f"sign:weight_decay={WD}", "--test-fraction", "0.05",
            "--eval-batch", "16", "--jobs", "2"]
    t0 = time.time()

    def step(name):
        print(f"[{time.time() - t0:6.1f}s] {name}", flush=True)

    step("help and usage errors")
    p = run([demo, "--help"], env)
    check("demo:lr=4e-4,beta=0.999,chunk=64,k=32" in p.stdout and "contributor-mean" in p.stdout, p.stdout)
    p = run([demo, *opts, "--inner-steps", "2", "-o", work / "x"], env, code=2)
    check("--inner-steps must be 1" in p.stderr, p.stderr)
    check(not (work / "x").exists(), "a usage error created the output folder")

    step(f"{M} workers x {R} rounds")
    out = work / "run"
    run([demo, *opts, "-o", out], env)
    for rel in (["config.txt", "metrics.jsonl"] + [f"rounds/round-{r:04d}.h5" for r in range(R + 1)]
                + [f"deltas/round-{r:04d}/worker-{w}.{e}" for r in range(1, R + 1) for w in (1, 2)
                   for e in ("h5", "json", "steps.jsonl")]
                + [f"state/worker-{w}/round-{r:04d}.h5" for r in range(1, R + 1) for w in (1, 2)]):
        check((out / rel).is_file(), f"missing {rel}")
    check(not [p.name for p in out.rglob(".*") if p.is_file()], "temporary files left")
    cfg = (out / "config.txt").read_text()
    check("inner_steps=1\n" in cfg and f"inner_optimizer=demo:lr={LR}," in cfg and "outer_lr=worker" in cfg, cfg)

    # The schedule: cosine, warm-up min(250, R/10) = 1 step, total R, floor 0.1*lr.
    lo = 0.1 * LR
    want_lr = [LR] + [lo + (LR - lo) * (1 + np.cos(np.pi * (t - 1) / (R - 1))) / 2 for t in range(1, R)]
    aggregate_lines = [l for l in log_lines(out) if "loco-aggregate" in l]
    check(len(aggregate_lines) == R, f"{len(aggregate_lines)} aggregations, expected {R}")
    for r in range(1, R + 1):
        for w in (1, 2):
            with h5py.File(out / f"deltas/round-{r:04d}/worker-{w}.h5", "r") as h:
                at = h.attrs
                check(at["kind"] == "compressed" and at["source_kind"] == "delta", f"round {r} worker {w}: kind")
                check(at["codec"] == "dct_topk:chunk=64,k=32,tile=2d", f"codec {at['codec']}")
                check(at["inner_steps"] == 1 and at["step"] == r, f"round {r} worker {w}: step {at['step']}")
                check(abs(at["lr"] - want_lr[r - 1]) <= 1e-15, f"round {r}: lr {at['lr']}, expected {want_lr[r - 1]}")
                lr_r = float(at["lr"])
        check(f"--outer-lr {lr_r!r}" in aggregate_lines[r - 1] or f"--outer-lr {lr_r}" in aggregate_lines[r - 1],
              f"round {r}: the aggregation was not given the workers' lr {lr_r}: {aggregate_lines[r - 1]}")

    step("round 1 recomputed with numpy")
    theta0 = tensors(out / "rounds/round-0000.h5")
    theta1 = tensors(out / "rounds/round-0001.h5")
    files = [out / f"deltas/round-0001/worker-{w}.h5" for w in (1, 2)]
    with h5py.File(files[0], "r") as h:
        lr1 = float(h.attrs["lr"])
    keep, lr_f = np.float32(1 - lr1 * WD), np.float32(lr1)
    decided = 0
    for name, t0_ in theta0.items():
        dbar, scale = contributor_mean_idct(files, name, t0_.shape, 64)
        s = np.sign(dbar).astype(np.float32)
        want = t0_ * keep - lr_f * s
        # A sign is certain where |dbar| exceeds the float32 error of loco's two-pass transform, and
        # where every coefficient of the tile is zero (rows of tokens no batch held): then dbar = 0.
        sure = (np.abs(dbar) > 1e-5 * max(scale, 1e-30)) | (dbar == 0)
        check(np.array_equal(theta1[name][sure], want[sure]), f"{name}: round 1 differs from the numpy sign step")
        other = t0_ * keep - lr_f * -s
        check(np.all((theta1[name] == want) | (theta1[name] == other) | (theta1[name] == t0_ * keep)),
              f"{name}: an element is not a sign step")
        decided += int(sure.sum())
    check(decided > 0.99 * sum(v.size for v in theta0.values()), f"only {decided} elements decided")

    step("bytes per round from payload_bytes")
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    check([r["round"] for r in rows] == list(range(R + 1)), "one record a round")
    for r in range(1, R + 1):
        sent = max(h5py.File(out / f"deltas/round-{r:04d}/worker-{w}.h5", "r").attrs["payload_bytes"] for w in (1, 2))
        check(rows[r]["bytes_sent_per_worker"] == sent, f"round {r}: bytes sent {rows[r]['bytes_sent_per_worker']} != {sent}")
        check(sent < rows[r]["model_bytes"] / 10, f"round {r}: {sent} bytes is not compressed")
    check(rows[-1]["loss"] < rows[0]["loss"], f"held-out loss did not fall: {rows[0]['loss']} -> {rows[-1]['loss']}")

    step("a rerun runs nothing")
    before, n_lines = tree_digest(out), len(log_lines(out))
    run([demo, *opts, "-o", out], env)
    check(tree_digest(out) == before, "a rerun changed files")
    check(len(log_lines(out)) == n_lines, "a rerun ran tools")

    step("a deleted round-3 delta is recomputed bit for bit")
    d3 = out / "deltas/round-0003/worker-2.h5"
    with h5py.File(d3, "r") as h:
        old = {k: h[f"tensors/{k}/values"][()].tobytes() for k in h["tensors"]}
    for rel in ("deltas/round-0003/worker-2.h5", "deltas/round-0003/worker-2.json", "state/worker-2/round-0003.h5",
                "rounds/round-0003.h5", "rounds/round-0003.summary.json", "metrics/round-0003.json"):
        (out / rel).unlink()
    run([demo, *opts, "-o", out], env)
    with h5py.File(d3, "r") as h:
        check(old == {k: h[f"tensors/{k}/values"][()].tobytes() for k in h["tensors"]}, "the recomputed delta differs")
    check(tree_digest(out).keys() == before.keys(), "the recomputed run has other files")

    print(f"test_demo: all checks passed ({time.time() - t0:.1f} s)")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"test_demo: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
