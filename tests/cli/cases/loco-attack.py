"""Cases for loco-attack (research tool): ALIE, sign flip, IPM, scaled and gaussian deltas checked
against numpy, attributes of the written deltas, label flipping of a shard, and errors that leave
no output. Inputs are made in each case's folder by this file run as a script (h5py, man 5 loco-format)."""

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))  # clitest and fixtures, also when run as a script
from clitest import Case  # noqa: E402
MAKE = f"/usr/bin/python3 {HERE} {{bin}} ."  # setup line: writes the inputs into {tmp}
CONFIG = json.dumps({"type": "mlp", "hidden": [4]})
SHAPES = {"w": (6, 3), "b": (3,)}
BASE = "xxh64:0123456789abcdef"


def values(seed):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}


def make(bin_dir, out):
    """h0..h3: honest deltas of workers 0..3 (samples 10, 20, 30, 40); other.h5 another base;
    shape.h5 another shape; shard.h5 a classification shard with 5 classes; tokens.h5 a token shard."""
    import fixtures
    out = Path(out)
    for k in range(4):
        fixtures.write_loco(out / f"h{k}.h5", values(k), {"model_config": CONFIG, "round": np.int64(2),
                            "worker": np.int64(k), "samples": np.int64(10 * (k + 1)), "base_checksum": BASE,
                            "loss_mean": float(k)}, kind="delta")
    a = {"model_config": CONFIG, "round": np.int64(2), "worker": np.int64(7), "base_checksum": BASE}
    fixtures.write_loco(out / "other.h5", values(8), {**a, "base_checksum": "xxh64:ffffffffffffffff"}, kind="delta")
    bad = values(9)
    bad["w"] = np.zeros((3, 6), np.float32)
    fixtures.write_loco(out / "shape.h5", bad, a, kind="delta")
    x = np.arange(24, dtype=np.float32).reshape(8, 3)
    y = np.array([0, 1, 2, 3, 4, 0, 1, 2], np.int32)
    fixtures.write_loco(out / "shard.h5", {}, {"classes": np.int64(5)}, kind="data", groups={"data": {"x": x, "y": y}})
    fixtures.write_loco(out / "tokens.h5", {}, {"vocab": np.int64(256)}, kind="data",
                        groups={"data": {"tokens": np.arange(10, dtype=np.uint8)}})


def read(path, group="tensors"):
    import h5py
    with h5py.File(path, "r") as f:
        return {n: f[group][n][()] for n in f[group]}, dict(f.attrs)


def honest():
    return [values(k) for k in range(4)]


def alie(ctx, r):
    # n = 4 + 2 = 6, f = 2: z_max would be Φ⁻¹((6 − 2)/6) with s = 4 − 2 = 2; z given as 1.5 here.
    s = json.loads(r.stdout)
    assert s["n"] == 6 and s["f"] == 2 and s["z"] == 1.5 and s["workers"] == [4, 5], s
    for name, worker in (("a.h5", 4), ("b.h5", 5)):
        got, attrs = read(ctx.tmp / name)
        for n in SHAPES:
            hs = np.stack([h[n].astype(np.float64) for h in honest()])
            ref = hs.mean(0) - 1.5 * hs.std(0)
            # float64 moments of values ≲ 4, rounded once to float32: ≤ 2⁻²⁴·8.
            assert np.max(np.abs(got[n] - ref)) < 1e-6, (n, got[n], ref)
            assert got[n].dtype == np.float32
        assert attrs["kind"] == "delta" and attrs["worker"] == worker and attrs["round"] == 2, attrs
        assert attrs["samples"] == 25 and attrs["base_checksum"] == BASE and attrs["attack"] == "alie:z=1.5", attrs
        assert attrs["model_config"] == CONFIG and attrs["loss_mean"] == 1.5 and attrs["attack_z"] == 1.5, attrs


def alie_default_z(ctx, r):
    # n = 25, f = 1: s = 13 − 1 = 12, z = Φ⁻¹((25 − 12)/25) = Φ⁻¹(0.52), population standard deviation.
    from statistics import NormalDist
    z = NormalDist().inv_cdf(0.52)
    s = json.loads(r.stdout)
    assert s["n"] == 25 and abs(s["z"] - z) < 1e-12, s
    got, attrs = read(ctx.tmp / "a.h5")
    assert attrs["attack"] == "alie" and abs(attrs["attack_z"] - z) < 1e-12, attrs
    for n in SHAPES:
        hs = np.stack([h[n].astype(np.float64) for h in honest()])
        ref = hs.mean(0) - z * hs.std(0)
        assert np.max(np.abs(got[n] - ref)) < 1e-6, n


def linear(scale):
    def check(ctx, r):
        got, _ = read(ctx.tmp / "a.h5")
        for n in SHAPES:
            ref = scale * np.mean([h[n].astype(np.float64) for h in honest()], axis=0)
            assert np.max(np.abs(got[n] - ref)) < 1e-6 * max(1, abs(scale)), (n, got[n], ref)
    return check


def gaussian(ctx, r):
    a, _ = read(ctx.tmp / "a.h5")
    b, _ = read(ctx.tmp / "b.h5")
    c, attrs = read(ctx.tmp / "c.h5")
    assert not np.array_equal(a["w"], b["w"]), "two attackers draw the same noise"
    assert np.array_equal(a["w"], c["w"]) and np.array_equal(a["b"], c["b"]), "same seed and worker must repeat"
    assert attrs["worker"] == 10, attrs


def flipped(ctx, r):
    got, attrs = read(ctx.tmp / "f.h5", "data")
    assert got["y"].tolist() == [4, 3, 2, 1, 0, 4, 3, 2], got["y"]
    assert np.array_equal(got["x"], np.arange(24, dtype=np.float32).reshape(8, 3))
    assert attrs["attack"] == "label-flip" and attrs["classes"] == 5 and attrs["kind"] == "data", attrs
    assert json.loads(r.stdout) == {"attack": "label-flip", "examples": 8, "classes": 5}


CASES = [
    Case("--help marks it as a research tool", args=["--help"], stdout="Research tool"),
    Case("the man page marks it as a research tool", args=["--generate-man"], stdout="ROBUSTNESS EXPERIMENTS ONLY"),
    Case("alie with a given z: two attackers, values and attributes", setup=[MAKE],
         args=["--attack", "alie:z=1.5", "-o", "a.h5", "-o", "b.h5", "--json", "h0.h5", "h1.h5", "h2.h5", "h3.h5"],
         check=alie, unchanged="{tmp}/h0.h5"),
    Case("alie's default z from n and f", setup=[MAKE],
         args=["--attack", "alie", "--workers", "25", "-o", "a.h5", "--json", "h0.h5", "h1.h5", "h2.h5", "h3.h5"],
         check=alie_default_z),
    Case("sign-flip is minus the honest mean", setup=[MAKE],
         args=["--attack", "sign-flip", "-o", "a.h5", "h0.h5", "h1.h5", "h2.h5", "h3.h5"], stdout_empty=True,
         check=linear(-1.0)),
    Case("ipm is minus eps times the honest mean", setup=[MAKE],
         args=["--attack", "ipm:eps=0.5", "-o", "a.h5", "h0.h5", "h1.h5", "h2.h5", "h3.h5"], check=linear(-0.5)),
    Case("scaled multiplies the honest mean", setup=[MAKE],
         args=["--attack", "scaled:s=-4", "-o", "a.h5", "h0.h5", "h1.h5", "h2.h5", "h3.h5"], check=linear(-4.0)),
    Case("gaussian: one draw per attacker, repeatable by seed and worker", setup=[MAKE],
         sh="loco-attack --attack gaussian:sigma=3 --seed 5 --worker 10 -o a.h5 -o b.h5 h0.h5 h1.h5 && "
            "loco-attack --attack gaussian:sigma=3 --seed 5 --worker 10 -o c.h5 h0.h5 h1.h5", check=gaussian),
    Case("label flip of a classification shard", setup=[MAKE],
         args=["--label-flip", "-o", "f.h5", "--json", "shard.h5"], check=flipped),
    Case("label flip refuses a token shard", setup=[MAKE], args=["--label-flip", "-o", "f.h5", "tokens.h5"], code=4,
         stderr=["tokens.h5", "token shard"], absent="{tmp}/f.h5"),
    Case("deltas of another global model are refused", setup=[MAKE],
         args=["--attack", "sign-flip", "-o", "a.h5", "h0.h5", "other.h5"], code=4,
         stderr=["other.h5", "base_checksum"], absent="{tmp}/a.h5"),
    Case("a delta of another shape is refused", setup=[MAKE],
         args=["--attack", "sign-flip", "-o", "a.h5", "-o", "b.h5", "h0.h5", "shape.h5"], code=4,
         stderr=["shape.h5", "tensor w", "[6, 3]"], absent=["{tmp}/a.h5", "{tmp}/b.h5"]),
    Case("alie without a defined z asks for one", setup=[MAKE],
         args=["--attack", "alie", "-o", "a.h5", "-o", "b.h5", "-o", "c.h5", "h0.h5", "h1.h5"], code=2,
         stderr="give z=", absent="{tmp}/a.h5"),
    Case("alie whose z_max is 0 is refused (n even, f = 1: the honest mean)", setup=[MAKE],
         args=["--attack", "alie", "--workers", "10", "-o", "a.h5", "h0.h5", "h1.h5"], code=2,
         stderr=["honest mean", "n = 10, f = 1"], absent="{tmp}/a.h5"),
    Case("alie with z=0 is refused", setup=[MAKE],
         args=["--attack", "alie:z=0", "-o", "a.h5", "h0.h5", "h1.h5"], code=2, stderr="honest mean",
         absent="{tmp}/a.h5"),
    Case("an unknown attack is a usage error", setup=[MAKE],
         args=["--attack", "lie", "-o", "a.h5", "h0.h5"], code=2, stderr="unknown attack 'lie'", absent="{tmp}/a.h5"),
    Case("no attack given is a usage error", setup=[MAKE], args=["-o", "a.h5", "h0.h5"], code=2,
         stderr="--attack"),
    Case("the output may not be an input", setup=[MAKE],
         args=["--attack", "sign-flip", "-o", "h1.h5", "h0.h5", "h1.h5"], code=2, unchanged="{tmp}/h1.h5"),
    Case("a missing input is an I/O error", setup=[MAKE],
         args=["--attack", "sign-flip", "-o", "a.h5", "h0.h5", "nothere.h5"], code=3, stderr="nothere.h5"),
]

if __name__ == "__main__":
    make(sys.argv[1], sys.argv[2])
