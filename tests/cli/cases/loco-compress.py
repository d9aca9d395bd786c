"""Cases for loco-compress: the compressed-file layout of man 5 loco-format with its byte counts, top-k
against a numpy reference (exactly k per tile, ties to the lower index, values kept exactly),
scaled sign and 2-bit quantization against their definitions, pipes, identical bytes in two
processes at different thread counts, and refusals (NaN/Inf exit 5, bad specs exit 2). Inputs are
made in each case's folder by this file run as a script."""

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))  # clitest and fixtures, also when run as a script
from clitest import Case  # noqa: E402
MAKE = f"/usr/bin/python3 {HERE} ."  # setup line: writes the inputs into {tmp}


def make(out):
    """d.h5: a delta (round 2, worker 1) with a 40x50 matrix of ties and zeros, a bias and a scalar;
    nan.h5 / inf.h5: the same with one NaN / Inf; ints.h5: an integer tensor."""
    import fixtures
    out = Path(out)
    rng = np.random.default_rng(5)
    w = (rng.integers(-3, 4, size=(40, 50)) * 0.25).astype(np.float32)  # many ties, many zeros
    t = {"w": w, "b": rng.standard_normal(50).astype(np.float32), "s": np.float32(-0.75)}
    attrs = {"round": np.int64(2), "worker": np.int64(1), "samples": np.int64(64)}
    fixtures.write_loco(out / "d.h5", t, attrs, kind="delta")
    bad = dict(t, b=t["b"].copy())
    bad["b"][7] = np.nan
    fixtures.write_loco(out / "nan.h5", bad, attrs, kind="delta")
    bad["b"][7] = -np.inf
    fixtures.write_loco(out / "inf.h5", bad, attrs, kind="delta")
    fixtures.write_loco(out / "big.h5", {"x": np.array([1, 70000], dtype=np.float32)}, kind="delta")
    fixtures.write_loco(out / "ints.h5", {"n": np.arange(4, dtype=np.int32)}, kind="delta")


def h5(ctx, name):
    import h5py
    return h5py.File(ctx.expand("{tmp}/" + name), "r")


def dense(ctx, name="d.h5"):
    with h5(ctx, name) as f:
        return {k: np.asarray(f["tensors"][k][()], dtype=np.float32) for k in f["tensors"]}


def topk_reference(x, k, tile):
    """Per tile: the k largest |x|, ties to the lower index; (local indices ascending, values)."""
    x = x.reshape(-1)
    tile = tile or x.size
    idx, val = [], []
    for base in range(0, x.size, tile):
        t = x[base:base + tile]
        kk = min(k, t.size)
        order = np.lexsort((np.arange(t.size), -np.abs(t)))[:kk]  # primary: -|x|, then index
        order.sort()
        idx.extend(order.tolist())
        val.extend(t[order].tolist())
    return np.array(idx), np.array(val, dtype=np.float32)


def layout_and_bytes(ctx, r):
    with h5(ctx, "c.h5") as f:
        assert f.attrs["kind"] == "compressed" and f.attrs["source_kind"] == "delta", dict(f.attrs)
        assert f.attrs["samples"] == 64 and f.attrs["round"] == 2, dict(f.attrs)
        payload = 0
        for name in ("w", "b", "s"):
            g = f["tensors"][name]
            assert g.attrs["codec"] == "topk+quant", dict(g.attrs)
            assert g.attrs["spec"] == "topk:k=5,tile=64+quant:bits=2,block=8,rounding=nearest,range=sigma"
            assert g.attrs["dtype"] == "float32" and g.attrs["tile"] == 64 and g.attrs["quant.bits"] == 2
            assert sorted(g) == ["indices", "offset", "packed", "scale"], sorted(g)
            assert g["indices"].dtype == np.uint16 and g["packed"].dtype == np.uint8
            sizes = sum(g[d].size * g[d].dtype.itemsize for d in g)
            assert g.attrs["payload_bytes"] == sizes
            payload += sizes
        assert list(f["tensors"]["w"].attrs["shape"]) == [40, 50]
        assert f["tensors"]["s"].attrs["ndim"] == 0 and "shape" not in f["tensors"]["s"].attrs
        # 2000 elements: 31 full tiles and one of 16, 5 kept each → 160 indices, packed in 40 bytes.
        assert f["tensors"]["w"]["indices"].shape == (160,)
        assert f["tensors"]["w"]["packed"].shape == (40,)
        assert f.attrs["payload_bytes"] == payload, (f.attrs["payload_bytes"], payload)
        assert f.attrs["raw_bytes"] == (2000 + 50 + 1) * 4
    j = json.loads(r.stdout)
    assert j["payload_bytes"] == payload and j["raw_bytes"] == 2051 * 4 and j["tensors"] == 3, j


def topk_matches_reference(ctx, r):
    x = dense(ctx)
    with h5(ctx, "c.h5") as f:
        for name in ("w", "b"):
            g = f["tensors"][name]
            want_i, want_v = topk_reference(x[name], 7, 64)
            got_i, got_v = g["indices"][()], g["values"][()]
            assert np.array_equal(got_i, want_i), (name, got_i[:20], want_i[:20])
            assert np.array_equal(got_v.view(np.uint32), want_v.view(np.uint32)), name  # bit-exact values
    back = dense(ctx, "r.h5")
    for name in ("w", "b"):
        kept = back[name] != 0
        assert np.array_equal(back[name][kept], x[name][kept])
        # contraction with δ = k/d per tile, summed: ‖C(x) − x‖² ≤ (1 − k/tile)‖x‖² holds tile by tile
        assert np.sum((back[name] - x[name]) ** 2) <= (1 - 7 / 64) * np.sum(x[name] ** 2) + 1e-6


def sign_definition(ctx, r):
    x, y = dense(ctx), dense(ctx, "r.h5")
    for name in ("w", "b"):
        v = x[name].reshape(-1)
        s = np.abs(v.astype(np.float64)).mean()
        want = np.where(v < 0, -s, s)
        assert np.allclose(y[name].reshape(-1), want, rtol=1024 * np.finfo(np.float32).eps, atol=0), name
    assert y["s"] == np.float32(-0.75)


def quant_half_step(ctx, r):
    x, y = dense(ctx), dense(ctx, "r.h5")
    with h5(ctx, "c.h5") as f:
        for name in ("w", "b"):
            scale = f["tensors"][name]["scale"][()]
            v, q = x[name].reshape(-1), y[name].reshape(-1)
            step = np.repeat(scale, 16)[: v.size]
            assert np.all(np.abs(q - v) <= 0.5 * step + 1e-6), name


def same_datasets(a, b):
    def check(ctx, r):
        with h5(ctx, a) as fa, h5(ctx, b) as fb:
            for name in fa["tensors"]:
                ga, gb = fa["tensors"][name], fb["tensors"][name]
                assert sorted(ga) == sorted(gb)
                for d in ga:
                    assert ga[d][()].tobytes() == gb[d][()].tobytes(), f"{name}/{d} differs"
                for k in ("seed", "stream", "shared_stream", "spec"):
                    assert ga.attrs[k] == gb.attrs[k], k
    return check


def powersgd_state(ctx, r):
    with h5(ctx, "s.h5") as f:
        assert f.attrs["kind"] == "state" and f.attrs["round"] == 3, dict(f.attrs)
        assert list(f["state"]["powersgd_q"]) == ["w"], list(f["state"]["powersgd_q"])  # b, s: sent dense
        assert f["state"]["powersgd_q"]["w"].shape == (50, 4)
    with h5(ctx, "c1.h5") as a, h5(ctx, "c2.h5") as b:
        assert sorted(a["tensors"]["w"]) == ["p", "q"] and sorted(a["tensors"]["b"]) == ["data"]
        assert not np.array_equal(a["tensors"]["w"]["q"][()], b["tensors"]["w"]["q"][()]), "round 2 ignored the state"
    x, y1, y2 = dense(ctx)["w"], dense(ctx, "r1.h5")["w"], dense(ctx, "r2.h5")["w"]
    e1, e2 = np.sum((x - y1) ** 2), np.sum((x - y2) ** 2)
    assert e2 <= e1 * (1 + 1e-5), (e1, e2)  # a second power iteration does not lose ground
    assert np.sum(y2 ** 2) <= np.sum(x ** 2) * (1 + 1e-5)  # a projection


def ef14_state(ctx, r):
    """Two rounds of --ef ef14: e1 = x - D1 and e2 = (e1 + x) - D2, bit-exact in float32."""
    x, d1, d2 = dense(ctx), dense(ctx, "r1.h5"), dense(ctx, "r2.h5")
    with h5(ctx, "s1.h5") as f1, h5(ctx, "s.h5") as f2, h5(ctx, "c2.h5") as c:
        assert f2.attrs["kind"] == "state" and f2.attrs["worker"] == 1 and f2.attrs["feedback"] == "ef14", dict(f2.attrs)
        assert c.attrs["feedback"] == "ef14", dict(c.attrs)
        for k in x:
            e1 = np.asarray(f1["state"]["residual"][k][()], dtype=np.float32)
            e2 = np.asarray(f2["state"]["residual"][k][()], dtype=np.float32)
            assert np.array_equal(e1, x[k] - d1[k]), k
            assert np.array_equal(e2, (e1 + x[k]) - d2[k]), k
        assert np.count_nonzero(d2["w"]) == 200  # 10% of 40x50


WORKER2 = ("/usr/bin/python3 -c \"import shutil, h5py, numpy as np; shutil.copy('d.h5', 'w2.h5'); "
           "f = h5py.File('w2.h5', 'r+'); f.attrs['worker'] = np.int64(2); f.close()\"")


def dct_all_coefficients(ctx, r):
    x, y = dense(ctx), dense(ctx, "r.h5")
    for k in x:
        assert np.allclose(x[k], y[k], atol=1e-5), k


def sketch_heavy(ctx, r):
    with h5(ctx, "c.h5") as f:
        assert f["tensors"]["w"]["table"].shape == (5, 4096)
        assert f["tensors"]["w"].attrs["rows"] == 5
    y = dense(ctx, "r.h5")["w"]
    assert np.count_nonzero(y) <= 30


SPARSELOCO = "topk:k=5,tile=64+quant:bits=2,block=8,range=sigma"
RANDOM = "randk:density=0.3,rescale=true+quant:bits=4,block=16,rounding=stochastic"

CASES = [
    Case("topk then 2-bit quant: groups, attributes and byte counts of man 5 loco-format", setup=[MAKE],
         args=["d.h5", "-o", "c.h5", "--codec", SPARSELOCO, "--json"], check=layout_and_bytes, stderr_empty=True),
    Case("top-k per tile equals the numpy reference (ties to the lower index, exact values)", setup=[MAKE],
         sh="loco-compress d.h5 -o c.h5 --codec topk:k=7,tile=64 && loco-decompress c.h5 -o r.h5",
         check=topk_matches_reference),
    Case("scaled sign decodes to mean|x| times the sign", setup=[MAKE],
         sh="loco-compress d.h5 -o c.h5 --codec sign && loco-decompress c.h5 -o r.h5", check=sign_definition),
    Case("2-bit nearest quantization is within half a step", setup=[MAKE],
         sh="loco-compress d.h5 -o c.h5 --codec quant:bits=2,block=16 && loco-decompress c.h5 -o r.h5",
         check=quant_half_step),
    Case("stdin to stdout gives the same datasets as files", setup=[MAKE],
         sh=f"loco-compress d.h5 -o a.h5 --codec {RANDOM} --seed 9 && "
            f"loco-compress - -o - --codec {RANDOM} --seed 9 < d.h5 > b.h5", check=same_datasets("a.h5", "b.h5")),
    Case("two processes at 1 and 2 threads write identical bytes", setup=[MAKE],
         sh=f"loco-compress --threads 1 d.h5 -o a.h5 --codec {RANDOM} --seed 3 & "
            f"loco-compress --threads 2 d.h5 -o b.h5 --codec {RANDOM} --seed 3; wait",
         check=same_datasets("a.h5", "b.h5")),
    Case("powersgd keeps its warm-start Q in --state across rounds", setup=[MAKE],
         sh="loco-compress d.h5 -o c1.h5 --codec powersgd:rank=4 --state s.h5 && "
            "loco-compress d.h5 -o c2.h5 --codec powersgd:rank=4 --state s.h5 && "
            "loco-decompress c1.h5 -o r1.h5 && loco-decompress c2.h5 -o r2.h5", check=powersgd_state),
    Case("--state with a stateless codec is a usage error", setup=[MAKE],
         args=["d.h5", "-o", "c.h5", "--codec", "sign", "--state", "s.h5"], code=2, stderr="keeps no state",
         absent="{tmp}/c.h5"),
    Case("--ef ef14 carries its residual in --ef-state across rounds", setup=[MAKE],
         sh="loco-compress d.h5 -o c1.h5 --codec topk:density=0.1 --ef ef14 --ef-state s.h5 && cp s.h5 s1.h5 && "
            "loco-compress d.h5 -o c2.h5 --codec topk:density=0.1 --ef ef14 --ef-state s.h5 && "
            "loco-decompress c1.h5 -o r1.h5 && loco-decompress c2.h5 -o r2.h5", check=ef14_state),
    Case("an --ef-state of another worker is refused", setup=[MAKE, WORKER2],
         sh="loco-compress d.h5 -o c1.h5 --codec topk:density=0.1 --ef ef14 --ef-state s.h5 && "
            "loco-compress w2.h5 -o c2.h5 --codec topk:density=0.1 --ef ef14 --ef-state s.h5",
         code=4, stderr="state of worker 1", absent="{tmp}/c2.h5"),
    Case("an --ef-state of another kind is refused", setup=[MAKE],
         sh="loco-compress d.h5 -o c1.h5 --codec topk --ef ef21 --ef-state s.h5 && "
            "loco-compress d.h5 -o c2.h5 --codec topk --ef sparseloco --ef-state s.h5",
         code=4, stderr="expected 'sparseloco:beta=0.95'", absent="{tmp}/c2.h5"),
    Case("--ef without --ef-state is a usage error", setup=[MAKE],
         args=["d.h5", "-o", "c.h5", "--codec", "topk", "--ef", "ef14"], code=2, stderr="go together",
         absent="{tmp}/c.h5"),
    Case("an unknown --ef kind is a usage error", setup=[MAKE],
         args=["d.h5", "-o", "c.h5", "--codec", "topk", "--ef", "ef15", "--ef-state", "s.h5"], code=2,
         stderr="unknown kind ef15"),
    Case("dct_topk keeping every coefficient reconstructs the input", setup=[MAKE],
         sh="loco-compress d.h5 -o c.h5 --codec dct_topk:chunk=16,k=16 && loco-decompress c.h5 -o r.h5",
         check=dct_all_coefficients),
    Case("count sketch writes rows x cols and decodes k heavy hitters", setup=[MAKE],
         sh="loco-compress d.h5 -o c.h5 --codec sketch:rows=5,cols=4096,k=30 && loco-decompress c.h5 -o r.h5",
         check=sketch_heavy),
    Case("a NaN is a numerical failure naming the tensor and element; nothing written", setup=[MAKE],
         args=["nan.h5", "-o", "c.h5", "--codec", "topk"], code=5, stderr="nan.h5: tensor b: element 7",
         absent="{tmp}/c.h5", listing={"{tmp}": ["big.h5", "d.h5", "inf.h5", "ints.h5", "nan.h5"]}),
    Case("an Inf is a numerical failure", setup=[MAKE], args=["inf.h5", "-o", "c.h5", "--codec", "cast"], code=5,
         stderr="element 7 is -inf"),
    Case("f16 overflow is a numerical failure", setup=[MAKE],
         args=["big.h5", "-o", "c.h5", "--codec", "cast:dtype=f16"], code=5, stderr="overflows float16",
         absent="{tmp}/c.h5"),
    Case("an unknown codec is a usage error", setup=[MAKE], args=["d.h5", "-o", "c.h5", "--codec", "zip"], code=2,
         stderr="unknown codec 'zip'"),
    Case("an unknown parameter is a usage error", setup=[MAKE],
         args=["d.h5", "-o", "c.h5", "--codec", "topk:densty=0.1"], code=2, stderr="unknown parameter 'densty'"),
    Case("bits=3 is a usage error", setup=[MAKE], args=["d.h5", "-o", "c.h5", "--codec", "quant:bits=3"], code=2),
    Case("a value codec cannot come first in a chain", setup=[MAKE],
         args=["d.h5", "-o", "c.h5", "--codec", "quant+topk"], code=2),
    Case("--codec is required", setup=[MAKE], args=["d.h5", "-o", "c.h5"], code=2),
    Case("a compressed input is refused", setup=[MAKE],
         sh="loco-compress d.h5 -o c.h5 --codec sign && loco-compress c.h5 -o c2.h5 --codec sign",
         code=4, stderr="already compressed"),
    Case("an integer tensor is refused", setup=[MAKE], args=["ints.h5", "-o", "c.h5", "--codec", "sign"], code=4,
         stderr="tensor n is int32"),
    Case("a missing input is an I/O error", args=["nothere.h5", "-o", "c.h5", "--codec", "sign"], code=3),
    Case("the output may not be the input", setup=[MAKE], args=["d.h5", "-o", "d.h5", "--codec", "sign"], code=2,
         unchanged="{tmp}/d.h5"),
    # Issue 19: state files are outputs too, checked against every other path before anything is written.
    Case("--ef-state and -o the same file", setup=[MAKE],
         args=["d.h5", "-o", "c.h5", "--codec", "topk:k=2", "--ef", "ef14", "--ef-state", "c.h5"], code=2,
         stderr="--output c.h5 and --ef-state c.h5 are the same file", absent="{tmp}/c.h5", unchanged="{tmp}/d.h5"),
    Case("--ef-state may not replace the input", setup=[MAKE],
         args=["d.h5", "-o", "c.h5", "--codec", "topk:k=2", "--ef", "ef14", "--ef-state", "d.h5"], code=2,
         unchanged="{tmp}/d.h5", stderr="output --ef-state d.h5 is also an input (IN d.h5)"),
    Case("--state and --ef-state the same file", setup=[MAKE],
         args=["d.h5", "-o", "c.h5", "--codec", "powersgd:rank=1", "--state", "s.h5", "--ef", "ef14", "--ef-state",
               "s.h5"], code=2, stderr="are the same file"),
    Case("a NaN codec parameter is a usage error", setup=[MAKE], args=["d.h5", "-o", "c.h5", "--codec", "topk:density=nan"],
         code=2, stderr="nan in topk:density=nan is not a finite number"),
]

if __name__ == "__main__":
    make(sys.argv[1])
