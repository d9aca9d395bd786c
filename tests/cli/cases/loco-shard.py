"""Cases for loco-shard: file names, every example in exactly one output, determinism for a seed,
text layouts, dry runs and refusals."""

import json

import h5py
import numpy as np

from clitest import Case

# 40 rows: an id column (0..39, so every example is recognisable), a feature, and a label in 0..3.
MAKE_CSV = "python3 -c \"print('id,f,label'); [print(f'{i},{i*0.5},{i%4}') for i in range(40)]\" > d.csv"
# 1000 bytes of text whose byte i is i mod 251 (so the order of bytes is recognisable too).
MAKE_TEXT = "python3 -c \"import sys; sys.stdout.buffer.write(bytes(i % 251 for i in range(1000)))\" > t.txt"

CSV_ARGS = ["--source", "csv", "--input", "{tmp}/d.csv", "--label-column", "label", "--shards", "3",
            "--test-fraction", "0.25", "--seed", "7", "--output", "{tmp}/out/s"]
NAMES = ["s-00001-of-00003.h5", "s-00002-of-00003.h5", "s-00003-of-00003.h5", "s-test.h5"]


def with_args(**replace):
    """CSV_ARGS with the values of some options replaced (keys: option names without dashes)."""
    args = list(CSV_ARGS)
    for k, v in replace.items():
        args[args.index("--" + k.replace("_", "-")) + 1] = v
    return args


def read(ctx, name):
    with h5py.File(ctx.expand(name), "r") as f:
        return dict(f.attrs), {k: f["data"][k][()] for k in f["data"]}


def each_example_once(ctx, r):
    ids = []
    for i, n in enumerate(NAMES):
        a, d = read(ctx, "{tmp}/out/" + n)
        assert a["kind"] == "data" and a["classes"] == 4 and a["shards"] == 3 and a["seed"] == 7, a
        assert a["shard"] == (0 if n == "s-test.h5" else i + 1), a
        assert json.loads(a["partition"])["scheme"] == "iid", a["partition"]
        assert d["x"].dtype == np.float32 and d["y"].dtype == np.int32 and d["x"].shape[1] == 2, d
        ids += [int(v) for v in d["x"][:, 0]]
        # labels travel with their rows: label = id mod 4, feature = id / 2
        assert (d["y"] == d["x"][:, 0].astype(int) % 4).all() and (d["x"][:, 1] == d["x"][:, 0] / 2).all()
    assert sorted(ids) == list(range(40)), sorted(ids)
    _, test = read(ctx, "{tmp}/out/s-test.h5")
    assert len(test["y"]) == 10, len(test["y"])  # ⌊0.25·40⌋


def same_data(a, b):
    def check(ctx, r):
        for n in NAMES:
            da, db = read(ctx, f"{a}/{n}")[1], read(ctx, f"{b}/{n}")[1]
            for k in da:
                assert da[k].tobytes() == db[k].tobytes(), f"{n}: /data/{k} differs between runs"
    return check


def differs_from(a, b):
    def check(ctx, r):
        da, db = read(ctx, f"{a}/{NAMES[0]}")[1], read(ctx, f"{b}/{NAMES[0]}")[1]
        assert da["x"].tobytes() != db["x"].tobytes(), "another seed gave the same first shard"
    return check


def json_summary(ctx, r):
    j = json.loads(r.stdout)
    assert j["examples"] == 40 and j["classes"] == 4 and j["x_dtype"] == "float32", j
    assert [s["size"] for s in j["shards"]] == [10, 10, 10] and j["test"]["size"] == 10, j
    assert sum(sum(s["class_counts"]) for s in j["shards"]) == 30 and j["written"], j


def dirichlet_summary(ctx, r):
    j = json.loads(r.stdout)
    assert j["partition"]["scheme"] == "dirichlet" and j["partition"]["alpha"] == [0.5], j
    assert sum(s["size"] for s in j["shards"]) == 30 and j["unused"] == 0, j
    ids = sorted(int(v) for n in NAMES for v in read(ctx, "{tmp}/out/" + n)[1]["x"][:, 0])
    assert ids == list(range(40)), ids


def text_shards(contiguous):
    def check(ctx, r):
        data = bytes(i % 251 for i in range(1000))
        parts = []
        for i in range(4):
            a, d = read(ctx, f"{{tmp}}/t-0000{i + 1}-of-00004.h5")
            assert a["vocab"] == 256 and a["kind"] == "data" and a["shard"] == i + 1, a
            assert d["tokens"].dtype == np.uint8, d["tokens"].dtype
            parts.append(d["tokens"].tobytes())
        _, t = read(ctx, "{tmp}/t-test.h5")
        assert t["tokens"].tobytes() == data[900:], "the test file is not the last 10% of the text"
        if contiguous:
            assert b"".join(parts) == data[:900] and [len(p) for p in parts] == [225] * 4
        else:  # blocks of 100: block b to worker b mod 4
            blocks = [data[b * 100:(b + 1) * 100] for b in range(9)]
            assert parts == [b"".join(blocks[w::4]) for w in range(4)], [len(p) for p in parts]
    return check


TEXT_ARGS = ["--source", "text", "--input", "{tmp}/t.txt", "--shards", "4", "--test-fraction", "0.1", "-o", "{tmp}/t"]

CASES = [
    Case("writes N shards and a test file, each example once", CSV_ARGS, setup=[MAKE_CSV, "mkdir out"],
         listing={"{tmp}/out": NAMES}, stderr="s-00001-of-00003.h5: 10 examples", check=each_example_once),
    Case("the same seed gives the same data", CSV_ARGS,
         setup=[MAKE_CSV, "mkdir out first", "loco-shard " + " ".join(with_args(output="first/s"))],
         check=same_data("{tmp}/first", "{tmp}/out")),
    Case("another seed gives other shards", CSV_ARGS,
         setup=[MAKE_CSV, "mkdir out other", "loco-shard " + " ".join(with_args(output="other/s", seed="8"))],
         check=differs_from("{tmp}/other", "{tmp}/out")),
    Case("--json prints the summary", CSV_ARGS + ["--json"], setup=[MAKE_CSV, "mkdir out"], check=json_summary),
    Case("existing outputs are replaced", CSV_ARGS, setup=[MAKE_CSV, "mkdir out", "echo junk > out/s-test.h5"],
         listing={"{tmp}/out": NAMES}, check=each_example_once),
    Case("--dry-run writes nothing", CSV_ARGS + ["--dry-run"], setup=[MAKE_CSV, "mkdir out"],
         listing={"{tmp}/out": []}, stderr="dry run: nothing written"),
    Case("dirichlet label skew keeps every example once",
         CSV_ARGS + ["--partition", "dirichlet:alpha=0.5,min-size=1", "--json"], setup=[MAKE_CSV, "mkdir out"],
         check=dirichlet_summary),
    Case("no test file for --test-fraction 0", ["--source", "csv", "--input", "{tmp}/d.csv", "--shards", "2", "-o",
                                                "{tmp}/out/s"],
         setup=[MAKE_CSV, "mkdir out"], listing={"{tmp}/out": ["s-00001-of-00002.h5", "s-00002-of-00002.h5"]}),
    Case("text: contiguous runs and the tail as test", TEXT_ARGS, setup=[MAKE_TEXT],
         stderr="t-00004-of-00004.h5: 225 tokens", check=text_shards(True)),
    Case("text: interleaved blocks", TEXT_ARGS + ["--text-layout", "interleaved", "--block", "100"],
         setup=[MAKE_TEXT], check=text_shards(False)),

    # Refusals.
    Case("a wrong label column names it", with_args(label_column="nope"), code=4, setup=[MAKE_CSV, "mkdir out"],
         stderr_re=r"\Aloco-shard: error: {tmp}/d.csv:1: .*'nope'", listing={"{tmp}/out": []}),
    Case("a label column index past the end", with_args(label_column="5"), code=4, setup=[MAKE_CSV, "mkdir out"],
         stderr_re=r"\Aloco-shard: error: {tmp}/d.csv", listing={"{tmp}/out": []}),
    Case("a missing input", ["--source", "csv", "--input", "{tmp}/none.csv", "--shards", "2", "-o", "{tmp}/s"],
         code=3, stderr_re=r"\Aloco-shard: error: {tmp}/none.csv: ", listing={"{tmp}": []}),
    Case("a missing output folder", with_args(output="{tmp}/nodir/s"), code=3, setup=[MAKE_CSV],
         stderr="{tmp}/nodir/s-00001-of-00003.h5", listing={"{tmp}": ["d.csv"]}),
    Case("a bad CSV cell names the file and line",
         ["--source", "csv", "--input", "{tmp}/b.csv", "--shards", "1", "-o", "{tmp}/s"],
         setup=["printf 'a,label\\n1,0\\nx,1\\n' > b.csv"], code=4, stderr_re=r"\Aloco-shard: error: {tmp}/b.csv:3"),
    Case("an unknown partition scheme", CSV_ARGS + ["--partition", "zipf"], code=2, setup=[MAKE_CSV, "mkdir out"],
         stderr="zipf", listing={"{tmp}/out": []}),
    Case("a test fraction of 1", with_args(test_fraction="1"), code=2, setup=[MAKE_CSV, "mkdir out"],
         listing={"{tmp}/out": []}),
    Case("mnist-idx needs --labels", ["--source", "mnist-idx", "--input", "x", "--shards", "1", "-o", "{tmp}/s"],
         code=2, stderr="--labels"),
    Case("more shards than examples", with_args(shards="41"), code=2, setup=[MAKE_CSV, "mkdir out"],
         listing={"{tmp}/out": []}),
]
