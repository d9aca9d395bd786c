"""Cases for loco-fragment: --list of the strided assignment, split into fragment files and join back
bit for bit (h5py), a fragment file accepted by loco-aggregate with a worker's --delta-base delta,
--mix (theta <- (1-a)*global + a*theta on the fragment's tensors, the others unchanged; bit for bit
loco-worker's own mixing), loco-delta against a fragment file, and the refusals (too many
fragments, a missing or doubled fragment, option misuse)."""

import h5py
import numpy as np

from clitest import Case

GPT = ("loco-init --seed 1 --config "
       "'{\"arch\":\"gpt\",\"vocab\":256,\"ctx\":16,\"d_model\":16,\"layers\":3,\"heads\":2}' -o m.h5")
SPLIT = [GPT, "loco-fragment --fragments 2 --index 0 m.h5 -o f0.h5", "loco-fragment --fragments 2 --index 1 m.h5 -o f1.h5"]
MAKE_TEXT = ("python3 -c \"import sys; sys.stdout.buffer.write(bytes(32 + i % 60 for i in range(600)))\" > t.txt && "
             "loco-shard -q --source text --input t.txt --shards 1 -o t")


def tensors(path, group="tensors"):
    with h5py.File(path, "r") as f:
        return {k: f[group][k][()] for k in f[group]}


def split_is_strided(ctx, r):
    f0, f1 = tensors(ctx.expand("{tmp}/f0.h5")), tensors(ctx.expand("{tmp}/f1.h5"))
    # 3 blocks, P = 2: blocks 0 and 2 plus the embeddings and (last block 2) ln_f and head in fragment 0.
    assert {k.split(".")[1] for k in f0 if k.startswith("blocks.")} == {"0", "2"}, sorted(f0)
    assert {k.split(".")[1] for k in f1 if k.startswith("blocks.")} == {"1"}, sorted(f1)
    assert {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias", "head.weight"} <= set(f0), sorted(f0)
    with h5py.File(ctx.expand("{tmp}/f1.h5"), "r") as f:
        assert f.attrs["kind"] == "model" and f.attrs["fragment"] == 1 and f.attrs["fragments"] == 2, dict(f.attrs)
    whole, joined = tensors(ctx.expand("{tmp}/m.h5")), tensors(ctx.expand("{tmp}/j.h5"))
    assert set(f0) | set(f1) == set(whole) and not set(f0) & set(f1)
    assert set(joined) == set(whole) and all(joined[k].tobytes() == whole[k].tobytes() for k in whole)


def aggregate_of_a_fragment(ctx, r):
    # Outer SGD lr=1 on one delta gives back the worker's local values of fragment 1's tensors.
    new, local = tensors(ctx.expand("{tmp}/f1-next.h5")), tensors(ctx.expand("{tmp}/local.h5"))
    old = tensors(ctx.expand("{tmp}/f1.h5"))
    assert set(new) == set(old)
    for k in new:
        assert np.allclose(new[k], local[k], rtol=0, atol=1e-6), k
    assert any(not np.array_equal(new[k], old[k]) for k in new)


def mixed_by_the_formula(ctx, r):
    m2, f1, out = (tensors(ctx.expand(f"{{tmp}}/{n}")) for n in ("m2.h5", "f1.h5", "mixed.h5"))
    assert set(out) == set(m2)
    for k, v in out.items():
        if k in f1:  # in double, rounded once: (1 - 0.25) * global + 0.25 * local
            want = (0.75 * f1[k].astype(np.float64) + 0.25 * m2[k].astype(np.float64)).astype(np.float32)
            assert v.tobytes() == want.tobytes(), k
        else:
            assert v.tobytes() == m2[k].tobytes(), k
    with h5py.File(ctx.expand("{tmp}/mixed.h5"), "r") as f:
        assert f.attrs["kind"] == "model" and "fragments" not in f.attrs, dict(f.attrs)


def delta_of_the_fragment(ctx, r):
    d, f1, m2 = (tensors(ctx.expand(f"{{tmp}}/{n}")) for n in ("fd.h5", "f1.h5", "m2.h5"))
    assert set(d) == set(f1)
    for k in d:
        assert d[k].tobytes() == (f1[k] - m2[k]).tobytes(), k
    with h5py.File(ctx.expand("{tmp}/fd.h5"), "r") as f:
        assert (f.attrs["kind"], f.attrs["fragment"], f.attrs["fragments"]) == ("delta", 1, 2), dict(f.attrs)


MIXED = SPLIT + [GPT.replace("--seed 1", "--seed 2").replace("m.h5", "m2.h5")]

CASES = [
    Case("--mix puts a fragment's values into a model", ["--mix", "{tmp}/f1.h5", "--mixing", "0.25", "{tmp}/m2.h5",
                                                          "-o", "{tmp}/mixed.h5"],
         setup=MIXED, check=mixed_by_the_formula, unchanged="{tmp}/m2.h5"),
    Case("--mix is loco-worker's mixing, bit for bit",
         sh="loco-worker --model m2.h5 --mix f1.h5 --mixing 0.25 --data t-00001-of-00001.h5 --steps 1 --batch 2 "
            "--seed 5 --save-local la.h5 -o a.h5 && loco-fragment --mix f1.h5 --mixing 0.25 m2.h5 -o mixed.h5 && "
            "loco-worker --model mixed.h5 --data t-00001-of-00001.h5 --steps 1 --batch 2 --seed 5 --save-local lb.h5 "
            "-o b.h5 && loco-inspect --diff la.h5 lb.h5",
         setup=MIXED + [MAKE_TEXT]),
    Case("loco-delta against a fragment file takes the fragment's tensors",
         sh="loco-delta --base f1.h5 --local m2.h5 --worker 1 -o fd.h5", setup=MIXED, check=delta_of_the_fragment),
    Case("--mixing outside [0, 1]", ["--mix", "{tmp}/f1.h5", "--mixing", "1.5", "{tmp}/m2.h5", "-o", "{tmp}/x.h5"],
         setup=MIXED, code=2, stderr="--mixing must be in [0, 1]", absent="{tmp}/x.h5"),
    Case("--mixing without --mix", ["--mixing", "0.5", "--fragments", "2", "--list", "{tmp}/m.h5"], setup=[GPT],
         code=2, stderr="--mixing needs --mix"),
    Case("--mix with a fragment of another model",
         ["--mix", "{tmp}/f1.h5", "{tmp}/other.h5", "-o", "{tmp}/x.h5"],
         setup=SPLIT + ["loco-init --seed 1 --config '{\"arch\":\"mlp\",\"sizes\":[4,3]}' -o other.h5"],
         code=4, stderr="fragment of another model", absent="{tmp}/x.h5"),
    Case("--list prints the assignment and the totals", ["--fragments", "2", "--list", "{tmp}/m.h5"], setup=[GPT],
         stdout_re=[r"^0\twte.weight\t\[256, 16\]\t4096$", r"^1\tblocks.1.ln1.weight\t\[16\]\t16$",
                    r"^0\thead.weight\t", r"^# fragment 1: 12 tensors, \d+ parameters$"]),
    Case("split and join give back the model", ["--join", "-o", "{tmp}/j.h5", "{tmp}/f1.h5", "{tmp}/f0.h5"],
         setup=SPLIT, check=split_is_strided, unchanged="{tmp}/f0.h5"),
    Case("a fragment file is loco-aggregate's model for --delta-base deltas",
         sh="loco-worker --model m.h5 --data t-00001-of-00001.h5 --steps 2 --batch 2 --delta-base f1.h5 "
            "--save-local local.h5 -o d.h5 && loco-aggregate --model f1.h5 --outer sgd:lr=1 -o f1-next.h5 d.h5",
         setup=SPLIT + [MAKE_TEXT], check=aggregate_of_a_fragment),
    Case("more fragments than blocks", ["--fragments", "4", "--index", "0", "{tmp}/m.h5", "-o", "{tmp}/x.h5"],
         setup=[GPT], code=2, stderr="4 fragments of a gpt model with 3 blocks", listing={"{tmp}": ["m.h5"]}),
    Case("an index beyond the fragments", ["--fragments", "2", "--index", "2", "{tmp}/m.h5", "-o", "{tmp}/x.h5"],
         setup=[GPT], code=2, stderr="fragment 2 does not exist"),
    Case("a missing fragment", ["--join", "-o", "{tmp}/j.h5", "{tmp}/f0.h5"], setup=SPLIT, code=4,
         stderr="blocks.1.ln1.weight of the model is in none of the 1 fragment files", absent="{tmp}/j.h5"),
    Case("a fragment twice", ["--join", "-o", "{tmp}/j.h5", "{tmp}/f0.h5", "{tmp}/f1.h5", "{tmp}/m.h5"], setup=SPLIT,
         code=4, stderr="both hold tensor", absent="{tmp}/j.h5"),
    Case("split needs --index", ["--fragments", "2", "{tmp}/m.h5", "-o", "{tmp}/x.h5"], setup=[GPT], code=2,
         stderr="--index p is required"),
    Case("--join and --list together", ["--join", "--list", "-o", "{tmp}/x.h5", "{tmp}/m.h5"], setup=[GPT], code=2,
         stderr="exclude each other"),
    Case("not a model", ["--fragments", "1", "--list", "{tmp}/t-00001-of-00001.h5"], setup=[MAKE_TEXT], code=4,
         stderr_re=r"\Aloco-fragment: error: {tmp}/t-00001-of-00001.h5: "),
]
