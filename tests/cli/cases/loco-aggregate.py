"""Cases for loco-aggregate: one DiLoCo outer step and FedAvg checked against numpy, input-order
independence, the JSON summary, dropped non-finite deltas, quorum, stale/foreign deltas, state of
another optimizer, compressed deltas (contributor-mean over top-k selections, median-norm clipping,
payload bytes, refusals), and usage errors. Inputs are made in each case's folder by this file run as a
script (h5py in the format.md layout; base_checksum from loco-inspect --checksum --json)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))  # clitest and fixtures, also when run as a script
from clitest import Case  # noqa: E402
MAKE = f"/usr/bin/python3 {HERE} {{bin}} ."  # setup line: writes the inputs into {tmp}
CONFIG = json.dumps({"type": "mlp", "hidden": [4]})
SHAPES = {"w": (6, 3), "b": (3,)}


def values(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {n: (scale * rng.standard_normal(s)).astype(np.float32) for n, s in SHAPES.items()}


def make(bin_dir, out):
    """g0.h5 (round 0, no state), deltas d0..d2 (workers 0..2, samples 10/20/30), nan.h5 (worker 3,
    a NaN), stale.h5 (another base), nosamples.h5, adam.h5 (a model holding Adam state)."""
    import fixtures
    out = Path(out)
    fixtures.write_loco(out / "g0.h5", values(0), {"model_config": CONFIG, "round": np.int64(0)})
    cs = json.loads(subprocess.check_output([f"{bin_dir}/loco-inspect", "--checksum", "--json", str(out / "g0.h5")]))
    base = cs["tensors_checksum"]

    def delta(name, v, worker, samples=None, base=base, kind="delta"):
        a = {"model_config": CONFIG, "round": np.int64(0), "worker": np.int64(worker), "base_checksum": base}
        if samples is not None:
            a["samples"] = np.int64(samples)
        fixtures.write_loco(out / name, v, a, kind=kind)

    for k in range(3):
        delta(f"d{k}.h5", values(10 + k), k, 10 * (k + 1))
    bad = values(20)
    bad["w"][5, 2] = np.nan
    delta("nan.h5", bad, 3, 5)
    delta("stale.h5", values(21), 4, 5, base="xxh64:0123456789abcdef")
    delta("nosamples.h5", values(22), 5)
    # Compressed deltas: top-4 of d0..d2 (cd0..cd2), one compressed with ef21 feedback, one of stale.h5.
    def compress(src, dst, *extra):
        subprocess.check_call([f"{bin_dir}/loco-compress", str(out / src), "-o", str(out / dst), "--codec", "topk:k=4",
                               *extra])
    for k in range(3):
        compress(f"d{k}.h5", f"cd{k}.h5")
    compress("nosamples.h5", "ef21.h5", "--ef", "ef21", "--ef-state", str(out / "ef21-state.h5"))
    compress("stale.h5", "cstale.h5")
    z = {n: np.zeros(s, np.float32) for n, s in SHAPES.items()}
    fixtures.write_loco(out / "adam.h5", values(0), {"model_config": CONFIG, "round": np.int64(0)},
                        groups={"state/exp_avg": z, "state/exp_avg_sq": z}, group_attrs={"state": {"step": np.int64(2)}})


def read(path, group="tensors"):
    import h5py
    with h5py.File(path, "r") as f:
        return {n: f[group][n][()] for n in f[group]}, dict(f.attrs), dict(f["state"].attrs) if "state" in f else {}


def deltas(*ks):
    return [values(10 + k) for k in ks]


def nesterov_step(ctx, r):
    """θ₁ = θ₀ − 0.7·(Δ̄ + 0.9·Δ̄) with m₁ = Δ̄ (zero state), Δ̄ the mean of d0..d2, in float64."""
    got, attrs, state_attrs = read(ctx.tmp / "g1.h5")
    mom, _, _ = read(ctx.tmp / "g1.h5", "state/momentum")
    theta, ds = values(0), deltas(0, 1, 2)
    for n in SHAPES:
        dbar = sum(d[n].astype(np.float64) for d in ds) / 3
        ref = theta[n] - 0.7 * (dbar + 0.9 * dbar)
        # |θ|, |Δ̄| ≲ 4: a few float32 roundings of values ≤ 8, each ≤ 2⁻²⁴·8 ≈ 5e-7.
        assert np.max(np.abs(got[n] - ref)) < 3e-6, (n, got[n], ref)
        assert np.max(np.abs(mom[n] - dbar)) < 1e-6, n
    assert attrs["round"] == 1 and attrs["kind"] == "model", attrs
    assert attrs["outer_optimizer"].startswith("nesterov:lr=0.7,momentum=0.9"), attrs["outer_optimizer"]
    assert attrs["reduction"] == "mean" and attrs["contributors"] == 3, attrs
    assert state_attrs["step"] == 1, state_attrs
    s = json.loads(r.stdout)
    assert [c["worker"] for c in s["contributors"]] == [0, 1, 2], s
    assert s["dropped"] == [] and s["round"] == 1 and s["outer_step"] == 1, s
    assert s["delta_bytes_read"] == 3 * 21 * 4, s
    dbar = np.concatenate([(sum(d[n].astype(np.float64) for d in ds) / 3).ravel() for n in SHAPES])
    assert abs(s["update_norm"] - np.linalg.norm(dbar)) < 1e-5 * np.linalg.norm(dbar), s


def fedavg_exact(ctx, r):
    got, _, st = read(ctx.tmp / "g1.h5")
    theta, (d,) = values(0), deltas(1)
    for n in SHAPES:
        assert np.array_equal(got[n], theta[n] - d[n]), n  # float32 θ − Δ, bit for bit
    assert st["step"] == 1, st


def weighted(ctx, r):
    got, attrs, _ = read(ctx.tmp / "g1.h5")
    theta, ds = values(0), deltas(0, 1, 2)
    for n in SHAPES:
        dbar = (10 * ds[0][n].astype(np.float64) + 20 * ds[1][n] + 30 * ds[2][n]) / 60
        assert np.max(np.abs(got[n] - (theta[n] - dbar))) < 1e-6, n
    assert attrs["reduction"] == "weighted-mean", attrs
    assert [c["weight"] for c in json.loads(r.stdout)["contributors"]] == [10 / 60, 20 / 60, 30 / 60]


def same_bits(ctx, r):
    a, _, _ = read(ctx.tmp / "a.h5")
    b, _, _ = read(ctx.tmp / "b.h5")
    ma, _, _ = read(ctx.tmp / "a.h5", "state/momentum")
    mb, _, _ = read(ctx.tmp / "b.h5", "state/momentum")
    for n in SHAPES:
        assert a[n].tobytes() == b[n].tobytes() and ma[n].tobytes() == mb[n].tobytes(), n


def nan_dropped(ctx, r):
    s = json.loads(r.stdout)
    assert [d["path"] for d in s["dropped"]] == ["nan.h5"] and "non-finite" in s["dropped"][0]["reason"], s
    assert s["passes"] == 2 and len(s["contributors"]) == 3, s
    a, _, _ = read(ctx.tmp / "with.h5")
    b, _, _ = read(ctx.tmp / "without.h5")
    for n in SHAPES:
        assert a[n].tobytes() == b[n].tobytes(), n


def summary_file(ctx, r):
    s = json.loads((ctx.tmp / "s.json").read_text())
    assert s["output"] == "g1.h5" and s["reduce"] == "mean" and "elapsed_seconds" in s, s


def topk_selection(x, k=4):
    """Indices of the k largest |x| (no ties among normal draws)."""
    return np.argsort(-np.abs(x.ravel()), kind="stable")[:k]


def contributor_mean(ctx, r):
    got, attrs, _ = read(ctx.tmp / "g1.h5")
    theta, ds = values(0), deltas(0, 1, 2)
    for n in SHAPES:
        total = np.zeros(ds[0][n].size)
        count = np.zeros(ds[0][n].size)
        for d in ds:
            sel = topk_selection(d[n])
            total[sel] += d[n].ravel()[sel].astype(np.float64)
            count[sel] += 1
        dbar = np.where(count > 0, total / np.maximum(count, 1), 0.0).reshape(SHAPES[n])
        assert np.max(np.abs(got[n] - (theta[n] - dbar))) < 1e-6, (n, got[n], theta[n] - dbar)
        if n == "w":  # 18 elements, 3 × 4 kept: elements nobody kept and elements kept by several
            assert (count == 0).any() and (count > 1).any(), count
    assert attrs["reduction"] == "contributor-mean" and attrs["clip"] == "none", attrs
    s = json.loads(r.stdout)
    # Each delta: w keeps 4 (uint32 index + float32 value: 32 bytes), b all of its 3 (24 bytes).
    assert [c["payload_bytes"] for c in s["contributors"]] == [56, 56, 56], s
    assert s["payload_bytes"] == 168 and s["compressed_deltas"] == 3 and attrs["payload_bytes"] == 168, s
    assert all(c["codec"] == "topk:k=4,tile=0" for c in s["contributors"]), s


def median_clip(ctx, r):
    got, attrs, _ = read(ctx.tmp / "g1.h5")
    fourth = values(20)
    fourth["w"][5, 2] = 0.5  # nan.h5 with its NaN replaced, as the case's first command does
    theta, ds = values(0), deltas(0, 1, 2) + [fourth]
    clipped = []
    for n in SHAPES:
        norms = [np.linalg.norm(d[n].astype(np.float64)) for d in ds]
        med = (sorted(norms)[1] + sorted(norms)[2]) / 2  # even count: mean of the two middle norms
        f = [min(1.0, med / v) for v in norms]
        clipped.append([x < 1 for x in f])
        dbar = sum(fk * d[n].astype(np.float64) for fk, d in zip(f, ds)) / 4
        assert np.max(np.abs(got[n] - (theta[n] - dbar))) < 1e-6, n
    assert attrs["clip"] == "median-norm" and attrs["reduction"] == "mean", attrs
    s = json.loads(r.stdout)
    assert [c["clipped_tensors"] for c in s["contributors"]] == [sum(c[k] for c in clipped) for k in range(4)], s
    assert s["payload_bytes"] == 4 * 21 * 4 and s["compressed_deltas"] == 0, s


def two_rounds(ctx, r):
    got, attrs, st = read(ctx.tmp / "g2.h5")
    assert attrs["round"] == 2 and st["step"] == 2, (attrs, st)


CASES = [
    Case("one DiLoCo step (nesterov 0.7/0.9) matches numpy", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--json", "d2.h5", "d0.h5", "d1.h5"],
         exists="{tmp}/g1.h5", unchanged="{tmp}/g0.h5", check=nesterov_step),
    Case("fedavg: sgd lr 1 with one delta gives exactly theta - delta", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "sgd", "d1.h5"], stdout_empty=True, check=fedavg_exact),
    Case("--outer-lr overrides the spec", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "sgd:lr=0.5", "--outer-lr", "1", "d1.h5"],
         check=fedavg_exact),
    Case("weighted mean by samples", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "sgd", "--reduce", "weighted-mean", "--json",
               "d0.h5", "d1.h5", "d2.h5"], check=weighted),
    Case("input order does not change a bit", setup=[MAKE],
         sh="loco-aggregate --model g0.h5 -o a.h5 d0.h5 d1.h5 d2.h5 && "
            "loco-aggregate --model g0.h5 -o b.h5 --block-bytes 12 d2.h5 d0.h5 d1.h5", check=same_bits),
    Case("state is carried into a second round", setup=[MAKE],
         sh="loco-aggregate --model g0.h5 -o g1.h5 d0.h5 d1.h5 && "
            "b=$(loco-inspect --checksum --json g1.h5 | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[\"tensors_checksum\"])') && "
            "/usr/bin/python3 -c \"import h5py; f=h5py.File('d0.h5','a'); f.attrs['base_checksum']='$b'\" && "
            "loco-aggregate --model g1.h5 -o g2.h5 d0.h5", check=two_rounds),
    Case("a NaN delta is dropped and named", setup=[MAKE],
         sh="loco-aggregate --model g0.h5 -o with.h5 --json --block-bytes 12 d0.h5 nan.h5 d1.h5 d2.h5 && "
            "loco-aggregate --model g0.h5 -o without.h5 d0.h5 d1.h5 d2.h5",
         stderr="nan.h5: dropped: non-finite values", check=nan_dropped),
    Case("contributor-mean over compressed top-k deltas matches numpy, with payload bytes", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "sgd", "--reduce", "contributor-mean", "--json",
               "cd0.h5", "cd1.h5", "cd2.h5"], check=contributor_mean),
    Case("median-norm clipping with an even count uses the mean of the two middle norms", setup=[MAKE],
         sh="/usr/bin/python3 -c \"import h5py; f=h5py.File('nan.h5','a'); f['tensors/w'][5, 2] = 0.5\" && "
            "loco-aggregate --model g0.h5 -o g1.h5 --outer sgd --clip median-norm --json d0.h5 d1.h5 d2.h5 nan.h5",
         check=median_clip),
    Case("a delta compressed with ef21 feedback is refused", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "cd0.h5", "ef21.h5"], code=4,
         stderr="ef21.h5: compressed with ef21 error feedback", absent="{tmp}/g1.h5"),
    Case("a compressed delta of another base is refused", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "cd0.h5", "cstale.h5"], code=4,
         stderr="cstale.h5: stale or foreign delta", absent="{tmp}/g1.h5"),
    Case("an unknown --clip is a usage error", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--clip", "norm", "d0.h5"], code=2, absent="{tmp}/g1.h5"),
    Case("quorum not reached exits 1 and writes nothing", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--min-deltas", "3", "d0.h5", "nan.h5", "d1.h5"], code=1,
         stderr="quorum not reached: 2 valid deltas of 3", absent="{tmp}/g1.h5"),
    Case("a stale delta is refused with both checksums", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "d0.h5", "stale.h5"], code=4,
         stderr_re=r"\Aloco-aggregate: error: stale\.h5: stale or foreign delta: base_checksum xxh64:0123456789abcdef, "
                   r"expected xxh64:[0-9a-f]{16}", absent="{tmp}/g1.h5"),
    Case("--allow-stale still refuses a foreign delta of the same round", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--allow-stale", "d0.h5", "stale.h5"], code=4,
         stderr="stale.h5: foreign delta", absent="{tmp}/g1.h5"),
    Case("state of another optimizer is refused naming the slot", setup=[MAKE],
         args=["--model", "adam.h5", "-o", "g1.h5", "d0.h5"], code=4, stderr="adam.h5: state slot 'exp_avg'"),
    Case("weighted mean needs samples", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--reduce", "weighted-mean", "d0.h5", "nosamples.h5"], code=4,
         stderr="nosamples.h5: weighted-mean needs a samples attribute"),
    Case("a model given as a delta is refused", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "adam.h5"], code=4, stderr="adam.h5: is a model file, expected delta"),
    Case("a delta given as the model is refused", setup=[MAKE],
         args=["--model", "d0.h5", "-o", "g1.h5", "d1.h5"], code=4, stderr="d0.h5: is a delta file, expected model"),
    Case("--summary writes the JSON summary", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--summary", "s.json", "d0.h5"], stdout_empty=True,
         check=summary_file),
    Case("--momentum with an optimizer without momentum is a usage error", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "adam", "--momentum", "0.5", "d0.h5"], code=2,
         absent="{tmp}/g1.h5"),
    Case("an unknown outer optimizer is a usage error", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "lion", "d0.h5"], code=2),
    Case("the output may not be an input", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "d0.h5", "d0.h5", "d1.h5"], code=2, unchanged="{tmp}/d0.h5"),
    Case("no delta is a usage error", setup=[MAKE], args=["--model", "g0.h5", "-o", "g1.h5"], code=2),
    Case("a missing delta file is an I/O error", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "d0.h5", "nothere.h5"], code=3, stderr="nothere.h5"),
]

if __name__ == "__main__":
    make(sys.argv[1], sys.argv[2])
