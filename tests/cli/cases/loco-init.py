"""Cases for loco-init: presets, --list, inline and file configs, the names, shapes and init of
models.md in the written file, seeding, and refusals (bad key, unknown preset, no output)."""

import json
from pathlib import Path

import h5py
import numpy as np

from clitest import Case

MLP = '{"arch":"mlp","sizes":[6,5,3]}'
GPT = '{"arch":"gpt","vocab":64,"ctx":8,"d_model":8,"layers":1,"heads":2,"tie_embeddings":true}'


def read(path):
    with h5py.File(path, "r") as f:
        return dict(f.attrs), {k: f["tensors"][k][()] for k in f["tensors"]}


def model_check(config, seed, shapes):
    def check(ctx, r):
        a, t = read(ctx.expand("{tmp}/m.h5"))
        assert a["kind"] == "model" and a["round"] == 0 and a["seed"] == seed, a
        got = json.loads(a["model_config"])
        for k, v in config.items():
            assert got[k] == v, (k, got)
        assert {k: v.shape for k, v in t.items()} == shapes, {k: v.shape for k, v in t.items()}
        assert all(v.dtype == np.float32 for v in t.values())
        assert a["parameters"] == sum(v.size for v in t.values()), a["parameters"]
    return check


def logreg_zeros(ctx, r):
    _, t = read(ctx.expand("{tmp}/m.h5"))
    assert t["linear.weight"].shape == (4, 3) and not t["linear.weight"].any() and not t["linear.bias"].any(), t


def mlp_init(ctx, r):
    _, t = read(ctx.expand("{tmp}/m.h5"))
    for name, fan_in in (("layers.0", 6), ("layers.1", 5)):
        for p in ("weight", "bias"):
            v = t[f"{name}.{p}"]
            assert np.abs(v).max() <= 1 / np.sqrt(fan_in) and v.any(), (name, p, v)


def tied_gpt(ctx, r):
    a, t = read(ctx.expand("{tmp}/m.h5"))
    assert "head.weight" not in t and t["wte.weight"].shape == (64, 8), sorted(t)
    assert (t["blocks.0.ln1.weight"] == 1).all() and not t["blocks.0.attn.qkv.bias"].any()


def same_seed_same_tensors(ctx, r):
    for other, seed, equal in (("b.h5", "1", True), ("c.h5", "2", False)):
        r2 = ctx.run("loco-init", "--config", MLP, "--seed", seed, "-o", "{tmp}/" + other)
        assert r2.code == 0, r2.stderr
        _, a = read(ctx.expand("{tmp}/m.h5"))
        _, b = read(ctx.expand("{tmp}/" + other))
        same = all(a[k].tobytes() == b[k].tobytes() for k in a)
        assert same == equal, f"seed {seed}: tensors {'differ' if equal else 'are the same'}"


def lists_presets(ctx, r):
    names = []
    for line in r.stdout.splitlines():
        name, js = line.split(None, 1)
        json.loads(js)
        names.append(name)
    assert names == sorted(names) and {"gpt-tiny", "logreg-mnist", "mlp-mnist"} <= set(names), names


CASES = [
    Case("a preset", ["--preset", "gpt-tiny", "--seed", "3", "-o", "{tmp}/m.h5"], listing={"{tmp}": ["m.h5"]},
         check=model_check({"arch": "gpt", "ctx": 64, "d_model": 32, "layers": 2, "heads": 2}, 3,
                           {"wte.weight": (256, 32), "wpe.weight": (64, 32), "head.weight": (256, 32),
                            "ln_f.weight": (32,), "ln_f.bias": (32,),
                            **{f"blocks.{i}.{n}": s for i in range(2) for n, s in (
                                ("ln1.weight", (32,)), ("ln1.bias", (32,)), ("attn.qkv.weight", (96, 32)),
                                ("attn.qkv.bias", (96,)), ("attn.proj.weight", (32, 32)), ("attn.proj.bias", (32,)),
                                ("ln2.weight", (32,)), ("ln2.bias", (32,)), ("mlp.fc.weight", (128, 32)),
                                ("mlp.fc.bias", (128,)), ("mlp.proj.weight", (32, 128)), ("mlp.proj.bias", (32,)))}})),
    Case("--list prints every preset with its JSON", ["--list"], check=lists_presets, stderr_empty=True),
    Case("inline JSON: a logreg starts at zero", ["--config", '{"arch":"logreg","features":3,"classes":4}', "-o",
                                                   "{tmp}/m.h5"],
         check=logreg_zeros),
    Case("a config file: mlp with PyTorch's default init", ["--config", "{tmp}/c.json", "--seed", "4", "-o", "{tmp}/m.h5"],
         setup=[f"echo '{MLP}' > c.json"],
         check=lambda ctx, r: (model_check({"arch": "mlp", "sizes": [6, 5, 3]}, 4,
                                           {"layers.0.weight": (5, 6), "layers.0.bias": (5,),
                                            "layers.1.weight": (3, 5), "layers.1.bias": (3,)})(ctx, r),
                               mlp_init(ctx, r))),
    Case("a tied GPT has no head.weight", ["--config", GPT, "-o", "{tmp}/m.h5"], check=tied_gpt),
    Case("the same seed gives the same tensors, another seed others", ["--config", MLP, "--seed", "1", "-o",
                                                                        "{tmp}/m.h5"],
         check=same_seed_same_tensors),
    Case("-o - writes the file to stdout", sh="loco-init --config '" + MLP + "' -o - > m.h5 && loco-inspect m.h5",
         stdout="layers.1.bias"),

    # Refusals.
    Case("an unknown config key is named", ["--config", '{"arch":"mlp","sizes":[3,2],"widht":4}', "-o", "{tmp}/m.h5"],
         code=4, stderr_re=r"\Aloco-init: error: --config: .*widht", listing={"{tmp}": []}),
    Case("a bad key in a config file names the file", ["--config", "{tmp}/c.json", "-o", "{tmp}/m.h5"], code=4,
         setup=["""echo '{"arch":"gpt","ctx":8,"d_model":8,"layers":1,"heads":3}' > c.json"""],
         stderr_re=r"\Aloco-init: error: {tmp}/c.json: .*heads", listing={"{tmp}": ["c.json"]}),
    Case("no -o", ["--preset", "gpt-tiny"], code=2, stderr="--output"),
    Case("an unknown preset lists the presets", ["--preset", "gpt-huge", "-o", "{tmp}/m.h5"], code=2,
         stderr=["gpt-huge", "gpt-tiny"], listing={"{tmp}": []}),
    Case("both --config and --preset", ["--preset", "gpt-tiny", "--config", MLP, "-o", "{tmp}/m.h5"], code=2,
         listing={"{tmp}": []}),
    Case("a missing config file", ["--config", "{tmp}/none.json", "-o", "{tmp}/m.h5"], code=3,
         stderr_re=r"\Aloco-init: error: {tmp}/none.json", listing={"{tmp}": []}),
    # Issue 19: a full disk (a file size limit: writes fail with EFBIG once SIGXFSZ is ignored) ends
    # in exit 3 with nothing left, not a crash in HDF5's close callbacks.
    Case("a full disk exits 3 and leaves nothing",
         sh="trap '' XFSZ; ulimit -f 256; loco-init --config '{\"arch\":\"mlp\",\"sizes\":[256,1024,256]}' -o m.h5",
         code=3, stderr_re=r"\Aloco-init: error: m.h5: .*\(disk full\?\)\n\Z", listing={"{tmp}": []}),
    Case("a model_config nested 100,000 levels is refused", ["--config", "{tmp}/c.json", "-o", "{tmp}/m.h5"],
         setup=[f"/usr/bin/python3 {Path(__file__).resolve().parents[1] / 'hostile.py'} deep-config-json c.json 100000"],
         code=4, stderr="{tmp}/c.json: model config: JSON nests deeper than 64 levels", listing={"{tmp}": ["c.json"]}),
]
