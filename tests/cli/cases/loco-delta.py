"""Cases for loco-delta: Δ = global − local between models of any format, bf16 widened exactly, the
delta's attributes, a safetensors delta that loco-aggregate takes, and the refusals (a foreign
config, a missing tensor, a non-finite difference, a data file as --base)."""

import h5py
import numpy as np

from clitest import Case

MLP = ("loco-init --seed {s} --config '{{\"arch\":\"mlp\",\"sizes\":[6,5,3]}}' -o {o}")
SETUP = [MLP.format(s=1, o="g.h5"), MLP.format(s=2, o="l.h5"),
         "loco-convert --dtype bf16 l.h5 l.safetensors"]


def tensors(path):
    with h5py.File(path, "r") as f:
        return {k: f["tensors"][k][()] for k in f["tensors"]}, dict(f.attrs)


def bf16(x):  # round to nearest even, as loco's cast
    b = x.astype(np.float32).view(np.uint32)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32)


def delta_is_global_minus_local(ctx, r):
    g, _ = tensors(ctx.expand("{tmp}/g.h5"))
    l, _ = tensors(ctx.expand("{tmp}/l.h5"))
    d, a = tensors(ctx.expand("{tmp}/d.h5"))
    assert set(d) == set(g)
    for k in g:
        assert d[k].dtype == np.float32 and np.array_equal(d[k], g[k] - bf16(l[k])), k
    assert (a["kind"], a["worker"], a["round"], a["samples"], a["inner_steps"]) == ("delta", 3, 7, 40, 5), a
    assert a["base_checksum"].startswith("xxh64:") and a["local_format"] == "safetensors", a


def aggregate_took_it(ctx, r):
    g, _ = tensors(ctx.expand("{tmp}/g.h5"))
    n, a = tensors(ctx.expand("{tmp}/n.h5"))
    l, _ = tensors(ctx.expand("{tmp}/l.h5"))
    for k in g:  # outer SGD lr 1 on one delta: the local model again (Δ rounded once, then θ − Δ)
        assert np.allclose(n[k], l[k], rtol=0, atol=2.0 ** -22 * (np.abs(g[k]).max() + np.abs(l[k]).max())), k
    assert a["round"] == 1, a


CASES = [
    Case("global minus a bf16 safetensors local model", ["--base", "{tmp}/g.h5", "--local", "{tmp}/l.safetensors",
         "--worker", "3", "--round", "7", "--samples", "40", "--inner-steps", "5", "-o", "{tmp}/d.h5"],
         setup=SETUP, check=delta_is_global_minus_local),
    Case("a safetensors delta is aggregated",
         sh="loco-delta --base g.h5 --local l.h5 --worker 0 -o d.safetensors && "
            "loco-inspect d.safetensors | grep -q 'kind.*delta' && "
            "loco-aggregate --model g.h5 --outer sgd:lr=1 -o n.h5 d.safetensors",
         setup=SETUP, check=aggregate_took_it),
    Case("another model config", ["--base", "{tmp}/g.h5", "--local", "{tmp}/o.h5", "--worker", "0", "-o", "{tmp}/d.h5"],
         setup=SETUP + ["loco-init --config '{\"arch\":\"mlp\",\"sizes\":[6,4,3]}' -o o.h5"], code=4,
         stderr="model_config", absent="{tmp}/d.h5"),
    Case("a data file is no global model", ["--base", "{tmp}/t-00001-of-00001.h5", "--local", "{tmp}/l.h5",
         "--worker", "0", "-o", "{tmp}/d.h5"],
         setup=SETUP + ["python3 -c \"import sys; sys.stdout.buffer.write(bytes(32 + i % 60 for i in range(600)))\" "
                        "> t.txt && loco-shard -q --source text --input t.txt --shards 1 -o t"],
         code=4, stderr="is a data file, expected model", absent="{tmp}/d.h5"),
    Case("--worker is required", ["--base", "{tmp}/g.h5", "--local", "{tmp}/l.h5", "-o", "{tmp}/d.h5"], setup=SETUP,
         code=2, absent="{tmp}/d.h5"),
]
