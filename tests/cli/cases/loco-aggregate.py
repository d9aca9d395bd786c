"""Cases for loco-aggregate: one DiLoCo outer step and FedAvg checked against numpy, input-order
independence, the JSON summary, dropped non-finite deltas, quorum, stale/foreign deltas, state of
another optimizer, compressed deltas (contributor-mean over top-k selections, median-norm clipping,
payload bytes, refusals), robust rules against numpy (median, trimmed mean, a Byzantine delta that pulls
the mean but not the median, Krum after NNM), QFedAvg, differential privacy (reproducible noise, σ = zC/m),
the --watch loop on a folder filled while it runs, and usage errors. Inputs are made in each case's folder by this file run as a
script (h5py in the layout of man 5 loco-format; base_checksum from loco-inspect --checksum --json)."""

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
    # A Byzantine delta: worker 7, huge and opposite; deltas with the worker's starting loss for QFedAvg.
    delta("byz.h5", {n: (-1000 * v).astype(np.float32) for n, v in values(23).items()}, 7, 10)
    for k in range(2):
        fixtures.write_loco(out / f"q{k}.h5", values(10 + k),
                            {"model_config": CONFIG, "round": np.int64(0), "worker": np.int64(k), "base_checksum": base,
                             "loss_first": np.float64(0.5 + 1.5 * k)}, kind="delta")
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


def robust_median(ctx, r):
    got, attrs, _ = read(ctx.tmp / "g1.h5")
    theta, ds = values(0), deltas(0, 1, 2)
    for n in SHAPES:
        med = np.median(np.stack([d[n] for d in ds]), axis=0)  # odd count: one of the inputs, exactly
        assert np.array_equal(got[n], theta[n] - med), n
    assert attrs["reduction"] == "median", attrs
    assert json.loads(r.stdout)["reduce"] == "median"


def trimmed(ctx, r):
    got, attrs, _ = read(ctx.tmp / "g1.h5")
    theta = values(0)
    ds = deltas(0, 1, 2) + [values(22)]  # d0..d2 and nosamples.h5 (worker 5)
    for n in SHAPES:
        s = np.sort(np.stack([d[n].astype(np.float64) for d in ds]), axis=0)
        tm = s[1:3].mean(axis=0)  # beta 0.25 of 4: one cut at each end (Flower's FedTrimmedAvg)
        # θ − float32(tm): values ≲ 4, one float32 rounding each: < 1e-6.
        assert np.max(np.abs(got[n] - (theta[n] - tm))) < 1e-6, n
    assert attrs["reduction"] == "trimmed-mean:beta=0.25", attrs


def byzantine(ctx, r):
    theta = values(0)
    mean, _, _ = read(ctx.tmp / "mean.h5")
    med, _, _ = read(ctx.tmp / "median.h5")
    honest = deltas(0, 1, 2) + [values(22)]
    for n in SHAPES:
        h = np.stack([d[n] for d in honest])
        step = theta[n] - med[n]
        assert np.all(step >= h.min(axis=0) - 1e-6) and np.all(step <= h.max(axis=0) + 1e-6), n
        assert np.max(np.abs(theta[n] - mean[n])) > 50, n  # the attacker's 1000x pulls the mean by ~200x


def krum_nnm(ctx, r):
    s = json.loads(r.stdout)
    assert s["reduce"] == "nnm:f=1+krum:f=1", s
    coef = s["robust"]["coefficients"]
    workers = [c["worker"] for c in s["contributors"]]
    assert workers == [0, 1, 2, 5, 7], workers
    assert abs(sum(coef) - 1) < 1e-12 and coef[workers.index(7)] == 0, coef  # the attacker has no weight
    got, attrs, _ = read(ctx.tmp / "g1.h5")
    theta = values(0)
    ds = deltas(0, 1, 2) + [values(22), {n: (-1000 * v).astype(np.float32) for n, v in values(23).items()}]
    for n in SHAPES:
        ref = theta[n] - sum(c * d[n].astype(np.float64) for c, d in zip(coef, ds))
        assert np.max(np.abs(got[n] - ref)) < 1e-5, n
    assert attrs["reduction"] == "nnm:f=1+krum:f=1", attrs


def qfedavg(ctx, r):
    got, attrs, _ = read(ctx.tmp / "g1.h5")
    theta, ds, F = values(0), deltas(0, 1), [0.5, 2.0]
    q, L = 0.2, 1 / 0.1
    norms = [np.sqrt(sum(np.sum(d[n].astype(np.float64) ** 2) for n in SHAPES)) for d in ds]
    h = sum(q * f ** (q - 1) * (L * nv) ** 2 + L * f ** q for f, nv in zip(F, norms))
    for n in SHAPES:
        step = sum(f ** q * L * d[n].astype(np.float64) for f, d in zip(F, ds)) / h
        assert np.max(np.abs(got[n] - (theta[n] - step))) < 1e-6, n
    assert attrs["reduction"] == "qfedavg:q=0.2,lr=0.1" and attrs["qffl_lipschitz"] == 10.0, attrs


def dp_noise(ctx, r):
    a, attrs, _ = read(ctx.tmp / "a.h5")
    b, _, _ = read(ctx.tmp / "b.h5")
    c, _, _ = read(ctx.tmp / "c.h5")
    for n in SHAPES:
        assert a[n].tobytes() == b[n].tobytes(), n  # the same seed: the same bits
    assert any(a[n].tobytes() != c[n].tobytes() for n in SHAPES)  # another seed: other noise
    s = json.loads((ctx.tmp / "a.json").read_text())
    assert s["dp"]["m"] == 3 and abs(s["dp"]["sigma"] - 0.5 * 1.0 / 3) < 1e-15, s["dp"]
    assert abs(attrs["dp_sigma"] - 0.5 / 3) < 1e-15 and attrs["dp_clip"] == 1.0, attrs
    for k, cont in enumerate(s["contributors"]):
        norm = np.sqrt(sum(np.sum(values(10 + k)[n].astype(np.float64) ** 2) for n in SHAPES))
        assert abs(cont["norm"] - norm) < 1e-9 * norm and abs(cont["dp_factor"] - min(1, 1 / norm)) < 1e-12, cont


def ef21_state(ctx, r):
    import h5py
    with h5py.File(ctx.tmp / "est/worker-5-round-000000.h5", "r") as f, h5py.File(ctx.tmp / "ef21-state.h5", "r") as w:
        for n in SHAPES:  # the aggregator's estimate is the worker's own, bit for bit
            assert f["tensors"][n][()].tobytes() == w["state/ef21_g"][n][()].tobytes(), n
        g = {n: f["tensors"][n][()] for n in SHAPES}
    got, _, _ = read(ctx.tmp / "g1.h5")
    theta, d0 = values(0), values(10)
    for n in SHAPES:
        sel = topk_selection(d0[n])
        c0 = np.zeros(d0[n].size)
        c0[sel] = d0[n].ravel()[sel]
        ref = theta[n] - (c0.reshape(SHAPES[n]) + g[n].astype(np.float64)) / 2
        assert np.max(np.abs(got[n] - ref)) < 1e-6, n


def watch_filled(ctx, r):
    theta, ds = values(0), deltas(0, 1, 2)
    m1, _, _ = read(ctx.tmp / "models/model-000001.h5")
    m2, attrs, _ = read(ctx.tmp / "models/model-000002.h5")
    for n in SHAPES:
        d01 = (ds[0][n].astype(np.float64) + ds[1][n]) / 2  # FedBuff K = 2: the mean of the pair
        assert np.max(np.abs(m1[n] - (theta[n] - d01))) < 1e-6, n
        # c.h5 (d2) and d.h5 (nosamples.h5) were made from round 0 and are applied to version 1: staleness 1,
        # polynomial weight 1/sqrt(2) each, mean over the pair.
        late = (ds[2][n].astype(np.float64) + values(22)[n]) / (2 * np.sqrt(2))
        assert np.max(np.abs(m2[n] - (m1[n] - late))) < 1e-6, n
    assert attrs["round"] == 2 and attrs["staleness"] == "polynomial:a=0.5", attrs
    assert (ctx.tmp / "models/latest").read_text().strip() == "model-000002.h5"
    ledger = json.loads((ctx.tmp / "models/ledger.json").read_text())
    assert sorted(e["file"] for e in ledger["applied"]) == ["a.h5", "b.h5", "c.h5", "d.h5"], ledger
    assert ledger["updates"] == 2 and ledger["pending"] == [], ledger
    assert len(r.stdout.strip().splitlines()) == 2  # --json: one summary line per update


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
    Case("robust median matches numpy", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "sgd", "--reduce", "median", "--json",
               "d2.h5", "d0.h5", "d1.h5"], check=robust_median),
    Case("trimmed mean (beta 0.25 of 4) matches numpy", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "sgd", "--reduce", "trimmed-mean:beta=0.25",
               "d0.h5", "d1.h5", "d2.h5", "nosamples.h5"], check=trimmed),
    Case("a Byzantine delta pulls the mean away but not the median", setup=[MAKE],
         sh="loco-aggregate --model g0.h5 -o mean.h5 --outer sgd d0.h5 d1.h5 d2.h5 nosamples.h5 byz.h5 && "
            "loco-aggregate --model g0.h5 -o median.h5 --outer sgd --reduce median d0.h5 d1.h5 d2.h5 nosamples.h5 byz.h5",
         check=byzantine),
    Case("nnm+krum gives the attacker no weight and records its plan", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "sgd", "--reduce", "nnm+krum:f=1", "--json",
               "d0.h5", "d1.h5", "d2.h5", "nosamples.h5", "byz.h5"], check=krum_nnm),
    Case("krum with too few deltas is a usage error naming the bound", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--reduce", "krum:f=1", "d0.h5", "d1.h5", "d2.h5"], code=2,
         stderr="krum:f=1 needs n ≥ 2f+3 = 5", absent="{tmp}/g1.h5"),
    Case("an unknown reducer is a usage error", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--reduce", "medain", "d0.h5"], code=2,
         stderr="unknown reducer 'medain'", absent="{tmp}/g1.h5"),
    Case("qfedavg weights by the workers' starting losses (numpy)", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "sgd", "--reduce", "qfedavg", "q0.h5", "q1.h5"],
         check=qfedavg),
    Case("qfedavg needs loss_first", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--reduce", "qfedavg", "d0.h5"], code=4,
         stderr="d0.h5: qfedavg needs the worker's loss", absent="{tmp}/g1.h5"),
    Case("DP noise is reproducible by seed; sigma = zC/m recorded", setup=[MAKE],
         sh="loco-aggregate --model g0.h5 -o a.h5 --outer sgd --dp-clip 1 --dp-noise 0.5 --dp-seed 3 --summary a.json "
            "d0.h5 d1.h5 d2.h5 && "
            "loco-aggregate --model g0.h5 -o b.h5 --outer sgd --dp-clip 1 --dp-noise 0.5 --dp-seed 3 d2.h5 d1.h5 d0.h5 && "
            "loco-aggregate --model g0.h5 -o c.h5 --outer sgd --dp-clip 1 --dp-noise 0.5 --dp-seed 4 d0.h5 d1.h5 d2.h5",
         check=dp_noise),
    Case("DP with a robust rule is a usage error", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--reduce", "median", "--dp-clip", "1", "d0.h5"], code=2,
         stderr="differential privacy needs --reduce mean", absent="{tmp}/g1.h5"),
    Case("--watch applies deltas written into the folder while it runs (FedBuff K=2, staleness)", setup=[MAKE],
         sh="mkdir inbox && "
            "{ loco-aggregate --watch inbox --model g0.h5 -o models --outer sgd --buffer 2 --allow-stale "
            "--max-updates 2 --poll 0.05 --json > watch.out & } && pid=$! && "
            "sleep 0.3 && cp d0.h5 inbox/.a.tmp && mv inbox/.a.tmp inbox/a.h5 && "
            "sleep 0.05 && cp d1.h5 inbox/.b.tmp && mv inbox/.b.tmp inbox/b.h5 && "
            "sleep 0.5 && cp d2.h5 inbox/.c.tmp && mv inbox/.c.tmp inbox/c.h5 && "
            "sleep 0.05 && cp nosamples.h5 inbox/.d.tmp && mv inbox/.d.tmp inbox/d.h5 && "
            "wait $pid && cat watch.out",
         stderr="2 update(s) this run", check=watch_filled),
    Case("--watch without a stop condition is a usage error", setup=[MAKE],
         sh="mkdir inbox && loco-aggregate --watch inbox --model g0.h5 -o models", code=2,
         stderr="--max-updates U or --until FILE"),
    Case("a delta compressed with ef21 feedback is refused", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "cd0.h5", "ef21.h5"], code=4,
         stderr="ef21.h5: compressed with ef21 error feedback", absent="{tmp}/g1.h5"),
    Case("--ef21-state keeps the worker's estimate and uses it as its delta", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "sgd", "--ef21-state", "est", "cd0.h5", "ef21.h5"],
         exists="{tmp}/est/worker-5-round-000000.h5", check=ef21_state),
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
    # Issue 19: NaN never passes an option check; outputs are checked against every path given.
    Case("--outer-lr nan is a usage error, not the default", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer-lr", "nan", "d0.h5"], code=2,
         stderr_re=r"\Aloco-aggregate: error: .*--outer-lr: nan is not a finite number", absent="{tmp}/g1.h5"),
    Case("--momentum NaN is a usage error, not the default", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--momentum", "NaN", "d0.h5"], code=2,
         stderr="NaN is not a finite number", absent="{tmp}/g1.h5"),
    Case("a NaN inside --outer is a usage error", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--outer", "nesterov:lr=0.7,momentum=nan", "d0.h5"], code=2,
         stderr="nan in nesterov:lr=0.7,momentum=nan is not a finite number", absent="{tmp}/g1.h5"),
    Case("--summary may not replace a delta", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--summary", "d0.h5", "d0.h5"], code=2, unchanged="{tmp}/d0.h5",
         stderr="output --summary d0.h5 is also an input (DELTA d0.h5)", absent="{tmp}/g1.h5"),
    Case("--summary and -o the same file", setup=[MAKE],
         args=["--model", "g0.h5", "-o", "g1.h5", "--summary", "g1.h5", "d0.h5"], code=2,
         stderr="are the same file", absent="{tmp}/g1.h5"),
]

if __name__ == "__main__":
    make(sys.argv[1], sys.argv[2])

# Issue 16.2: templar's compressor (topk tile=2d + quant range=templar) read through the compress API.
TEMPLAR = "topk:k=2,tile=2d,chunk=3+quant:bits=2,range=templar"


def templar_contributor_mean(ctx, r):
    """w (6, 3) in two 3 × 3 tiles and b (3,) in one tile of 3, 2 kept per tile; the aggregate is θ minus
    the contributor mean of loco-decompress's values over each delta's selection (from its indices)."""
    import h5py
    got, attrs, _ = read(ctx.tmp / "g1.h5")
    theta = values(0)
    for n, (rows, cols, th, tw) in {"w": (6, 3, 3, 3), "b": (1, 3, 1, 3)}.items():
        total, count = np.zeros((rows, cols)), np.zeros((rows, cols))
        for k in range(3):
            dec, _, _ = read(ctx.tmp / f"u{k}.h5")
            with h5py.File(ctx.tmp / f"t{k}.h5", "r") as f:
                idx = f[f"tensors/{n}/indices"][()]
                assert f[f"tensors/{n}"].attrs["templar_bytes"] > 0
            v = dec[n].reshape(rows, cols)
            for t, i in enumerate(idx):
                tile = t // 2  # 2 kept per tile, tiles row-major over the grid
                r0, c0 = (tile // (cols // tw)) * th, (tile % (cols // tw)) * tw
                rr, cc = r0 + int(i) // tw, c0 + int(i) % tw
                total[rr, cc] += v[rr, cc]
                count[rr, cc] += 1
        dbar = np.where(count > 0, total / np.maximum(count, 1), 0.0).reshape(SHAPES[n])
        assert np.max(np.abs(got[n] - (theta[n] - dbar))) < 1e-6, (n, got[n], theta[n] - dbar)
    assert attrs["reduction"] == "contributor-mean", attrs


CASES += [
    Case("contributor-mean over templar-compressed deltas (2-D tiles, bin-mean values)", setup=[MAKE],
         sh=" && ".join([f"loco-compress d{k}.h5 -o t{k}.h5 --codec {TEMPLAR} && loco-decompress t{k}.h5 -o u{k}.h5"
                         for k in range(3)]) +
            " && loco-aggregate --model g0.h5 -o g1.h5 --outer sgd --reduce contributor-mean t0.h5 t1.h5 t2.h5",
         check=templar_contributor_mean),
]
