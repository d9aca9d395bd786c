#!/usr/bin/python3
"""PyTorch interop: models made by loco-init (logreg, mlp, gpt with and without tied embeddings),
exported with loco-convert to safetensors, load with strict names and shapes into PyTorch modules
written here from models.md alone, and give the same loss as loco-eval and the same gradient as a
one-step SGD worker (lr 1, no momentum, no weight decay: Δ = θ − (θ − g) = g).

Tolerance. Both sides compute in float32 and differ only in the order of their sums: a sum of n
terms carries a relative error of at most about n·2⁻²⁴, and the longest sums here (a batch of 16
examples, 8 positions, d_model 16, 4·d hidden units) have n ≤ 64, i.e. ≤ 4e-6 per reduction,
chained through a few layers: well under 1e-4. Losses are compared at relative 1e-4. A gradient
entry is compared at 1e-4 of its tensor's largest entry (entries that are 0 in exact arithmetic,
such as the key bias of attention, are float noise on both sides), plus the float32 roundings of
θ − g and θ − (θ − g) the delta carries: 2⁻²³·(|θ| + |g|).
"""

import json
import math
import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import interop  # noqa: E402
from interop import TempDirCase, tool

try:
    import numpy as np

    import fixtures
    from fixtures import read_safetensors
except ImportError as e:
    interop.missing(f"numpy or h5py is missing ({e})")
try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    interop.missing(f"PyTorch is not installed (Debian: python3-torch) ({e})")

torch.set_num_threads(1)
REL = 1e-4


# --- The modules, from models.md -----------------------------------------------------------------

class LogReg(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.linear = nn.Linear(c["features"], c["classes"])

    def forward(self, x):
        return self.linear(x)


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        s = c["sizes"]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(s[:-1], s[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = F.relu(x)
        return x


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        h, dh = self.heads, d // self.heads
        q, k, v = self.qkv(x).split(d, dim=-1)  # q, k, v in that order
        # heads split the d columns of q, k and v into contiguous groups
        q, k, v = (z.view(b, t, h, dh).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(dh)
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(y)


class MlpBlock(nn.Module):
    def __init__(self, d, ratio):
        super().__init__()
        self.fc = nn.Linear(d, ratio * d)
        self.proj = nn.Linear(ratio * d, d)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d, heads, ratio):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d, heads)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = MlpBlock(d, ratio)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Gpt(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.tied = c["tie_embeddings"]
        self.wte = nn.Embedding(c["vocab"], d)
        self.wpe = nn.Embedding(c["ctx"], d)
        self.blocks = nn.ModuleList(Block(d, c["heads"], c["mlp_ratio"]) for _ in range(c["layers"]))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        if not self.tied:
            self.head = nn.Linear(d, c["vocab"], bias=False)

    def forward(self, tokens):
        t = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(torch.arange(t))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return x @ self.wte.weight.T if self.tied else self.head(x)


MODULES = {"logreg": LogReg, "mlp": Mlp, "gpt": Gpt}


# --- Helpers -------------------------------------------------------------------------------------

def load_safetensors(path):
    """The tensors of a safetensors file (float32) and its metadata, by the spec reader of fixtures."""
    _, meta, got = read_safetensors(path)
    out = {}
    for name, (dt, arr, _) in got.items():
        assert dt == "F32", (name, dt)
        out[name] = torch.from_numpy(np.array(arr, dtype=np.float32))
    return out, meta


def read_group(path, group="tensors"):
    import h5py
    with h5py.File(path, "r") as f:
        return {k: f[group][k][()] for k in f[group]}, dict(f.attrs)


class TorchMatchesLoco(TempDirCase):
    def model(self, config, seed=1, scale=None):
        """loco-init the config; optionally scale every weight except LayerNorm's (h5py, in place)
        so that attention is far from uniform; export it to safetensors."""
        m = self.tmp / "m.h5"
        tool("loco-init", "--config", json.dumps(config), "--seed", seed, "-o", m)
        if scale is not None:
            import h5py
            with h5py.File(m, "r+") as f:
                for k in f["tensors"]:
                    if ".ln" not in "." + k and "ln_f" not in k:
                        ds = f["tensors"][k]
                        ds[...] = ds[()] * np.float32(scale)
        st = self.tmp / "m.safetensors"
        tool("loco-convert", m, st)
        return m, st

    def torch_module(self, st):
        tensors, meta = load_safetensors(st)
        config = json.loads(meta["model_config"])
        module = MODULES[config["arch"]](config)
        want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        self.assertEqual({k: tuple(v.shape) for k, v in tensors.items()}, want,
                         "the exported names and shapes are not those of the module")
        module.load_state_dict(tensors, strict=True)
        return module

    def compare(self, m, st, data, inputs, targets, batch, n_pred):
        module = self.torch_module(st)
        logits = module(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        grads = {k: p.grad.detach().numpy() for k, p in module.named_parameters()}

        ev = json.loads(tool("loco-eval", "--model", m, "--data", data, "--json").stdout)
        self.assertEqual(ev["count"], n_pred)
        self.assertLessEqual(abs(ev["loss"] - loss.item()), REL * abs(loss.item()), (ev["loss"], loss.item()))

        delta = self.tmp / "delta.h5"
        tool("loco-worker", "--model", m, "--data", data, "--steps", 1, "--batch", batch, "--optimizer", "sgd:lr=1",
             "-o", delta)
        d, attrs = read_group(delta)
        theta, _ = read_group(m)
        self.assertEqual(attrs["samples"], n_pred)
        self.assertLessEqual(abs(attrs["loss_first"] - loss.item()), REL * abs(loss.item()))
        self.assertEqual(set(d), set(grads))
        for name, g in grads.items():
            with self.subTest(tensor=name):
                self.assertTrue(np.abs(g).max() > 0, f"{name}: zero gradient, the comparison is vacuous")
                tol = REL * np.abs(g).max() + 2.0**-23 * (np.abs(theta[name]) + np.abs(g))
                err = np.abs(d[name] - g)
                self.assertTrue((err <= tol).all(),
                                f"{name}: max |Δ − g| {err.max():.3g}, largest |g| {np.abs(g).max():.3g}")

    def classifier(self, config, seed=1):
        rng = np.random.default_rng(5)
        n, f, c = 16, 5, 3
        x = rng.standard_normal((n, f)).astype(np.float32)
        y = (np.arange(n) % c).astype(np.int32)  # every class present
        data = fixtures.write_loco(self.tmp / "d.h5", {}, {"classes": np.int64(c), "shard": np.int64(0)}, kind="data",
                                   groups={"data": {"x": x, "y": y}})
        m, st = self.model(config, seed)
        # batch = all 16 examples: the shuffled batch is a permutation, and the mean gradient does
        # not depend on the order beyond float rounding.
        self.compare(m, st, data, torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), n, n)

    def gpt(self, tied):
        ctx, vocab = 8, 64
        config = {"arch": "gpt", "vocab": vocab, "ctx": ctx, "d_model": 16, "layers": 2, "heads": 2,
                  "tie_embeddings": tied}
        rng = np.random.default_rng(6)
        tokens = rng.integers(0, vocab, ctx + 1).astype(np.uint8)  # exactly one window: offset 0
        data = fixtures.write_loco(self.tmp / "t.h5", {}, {"vocab": np.int64(256), "shard": np.int64(0)}, kind="data",
                                   groups={"data": {"tokens": tokens}})
        m, st = self.model(config, 2, scale=10)
        t = torch.from_numpy(tokens.astype(np.int64))[None, :]
        self.compare(m, st, data, t[:, :-1], t[:, 1:], 1, ctx)

    def test_logreg(self):
        self.classifier({"arch": "logreg", "features": 5, "classes": 3})

    def test_mlp(self):
        self.classifier({"arch": "mlp", "sizes": [5, 8, 7, 3]})

    def test_gpt(self):
        self.gpt(False)

    def test_gpt_tied_embeddings(self):
        self.gpt(True)


if __name__ == "__main__":
    interop.main()
