"""Cases for loco-decompress: dense files of the source kind with the input's attributes, exact
round trips of lossless settings, pipes, and refusals of dense or damaged compressed files."""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))
from clitest import Case  # noqa: E402
MAKE = f"/usr/bin/python3 {HERE} ."


def make(out):
    """d.h5: a delta with values exactly representable in float16; m.h5: a bfloat16 model."""
    import fixtures
    out = Path(out)
    rng = np.random.default_rng(6)
    w = (rng.integers(-512, 512, size=(8, 9)) / 64).astype(np.float32)
    fixtures.write_loco(out / "d.h5", {"w": w, "b": np.arange(9, dtype=np.float32) - 4, "s": np.float32(3)},
                        {"round": np.int64(1), "worker": np.int64(0), "base_checksum": "xxh64:0000000000000001"},
                        kind="delta")
    fixtures.write_loco(out / "m.h5", {"w": fixtures.BF16.from_f32(w)}, kind="model")


def read(ctx, name):
    import h5py
    with h5py.File(ctx.expand("{tmp}/" + name), "r") as f:
        return dict(f.attrs), {k: f["tensors"][k][()] for k in f["tensors"]}, {k: f["tensors"][k].dtype for k in f["tensors"]}


def exact_round_trip(ctx, r):
    a_attrs, a, _ = read(ctx, "d.h5")
    b_attrs, b, _ = read(ctx, "r.h5")
    assert b_attrs["kind"] == "delta" and b_attrs["base_checksum"] == a_attrs["base_checksum"], b_attrs
    assert "raw_bytes" not in b_attrs and "codec" not in b_attrs and "source_kind" not in b_attrs, b_attrs
    assert list(b) == ["w", "b", "s"], list(b)
    for k in a:
        assert a[k].shape == b[k].shape and np.array_equal(a[k], b[k]), k


def model_kind_and_dtype(ctx, r):
    attrs, t, dt = read(ctx, "r.h5")
    assert attrs["kind"] == "model", attrs
    assert dt["w"] == np.uint16, dt  # bfloat16 is stored as uint16 with dtype = "bfloat16"
    _, src, _ = read(ctx, "m.h5")
    assert np.array_equal(t["w"], src["w"])


CASES = [
    Case("f16 cast of representable values round-trips exactly, with the delta's attributes", setup=[MAKE],
         sh="loco-compress d.h5 -o c.h5 --codec cast:dtype=f16 && loco-decompress c.h5 -o r.h5",
         check=exact_round_trip),
    Case("top-k keeping everything round-trips exactly through pipes", setup=[MAKE],
         sh="loco-compress d.h5 -o - --codec topk:density=1,tile=4 | loco-decompress - -o r.h5",
         check=exact_round_trip),
    Case("a bfloat16 model comes back as a bfloat16 model", setup=[MAKE],
         sh="loco-compress m.h5 -o c.h5 --codec cast:dtype=bf16 && loco-decompress c.h5 -o r.h5",
         check=model_kind_and_dtype),
    Case("a dense file is refused", setup=[MAKE], args=["d.h5", "-o", "r.h5"], code=4,
         stderr="is a delta file, expected compressed"),
    Case("an index past its tile is bad input", setup=[MAKE, "loco-compress d.h5 -o c.h5 --codec topk:k=2,tile=8",
                                                       f"/usr/bin/python3 -c \"import h5py; f=h5py.File('c.h5','r+'); "
                                                       f"f['tensors/w/indices'][0]=60000\""],
         args=["c.h5", "-o", "r.h5"], code=4, stderr="tensor w", absent="{tmp}/r.h5"),
    Case("a missing dataset is bad input", setup=[MAKE, "loco-compress d.h5 -o c.h5 --codec sign",
                                                  "/usr/bin/python3 -c \"import h5py; f=h5py.File('c.h5','r+'); "
                                                  "del f['tensors/b/scale']\""],
         args=["c.h5", "-o", "r.h5"], code=4, stderr="no dataset 'scale'"),
]

if __name__ == "__main__":
    make(sys.argv[1])

# Issue 19: a repeated top-k index would let the order of the writes pick the value.
CASES += [
    Case("a repeated top-k index is bad input", setup=[MAKE, "loco-compress d.h5 -o c.h5 --codec topk:k=2,tile=8",
                                                       "/usr/bin/python3 -c \"import h5py; f=h5py.File('c.h5','r+'); "
                                                       "i=f['tensors/w/indices']; i[1]=i[0]\""],
         args=["c.h5", "-o", "r.h5"], code=4, absent="{tmp}/r.h5",
         stderr="the indices of a tile are not strictly increasing (a repeated index?)"),
]
