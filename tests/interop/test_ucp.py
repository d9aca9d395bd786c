#!/usr/bin/python3
"""DeepSpeed universal checkpoints against PyTorch itself: folders laid out as ds_to_universal.py
writes them (torch.save of {'cat_dim', 'param_n_sub_params', 'sub_param_shape', 'vocab_tensor',
'param'} per state, step.pt), converted by loco to HDF5 (read back with h5py), written back by loco
and loaded with torch.load (weights_only=True wherever the dict holds no SubparamShape), and loco's
tensor-parallel shards compared with the slices DeepSpeed's universal loader takes
(load_hp_checkpoint_state, restated here from its description: pad vocab rows for the target
degree, then per sub_param_shape block, per param_n_sub_params chunk, or torch.chunk on cat_dim).
Everything is compared exactly: loco copies bytes.
"""

import dataclasses
import sys
import types
import zipfile
from typing import List, Tuple, Union

sys.dont_write_bytecode = True
import interop  # noqa: E402
from interop import TempDirCase, tool

try:
    import h5py
    import numpy as np
except ImportError as e:
    interop.missing(f"numpy or h5py is missing ({e})")
try:
    import torch
except ImportError as e:
    interop.missing(f"PyTorch is not installed (Debian: python3-torch) ({e})")

# DeepSpeed defines SubparamShape in deepspeed.checkpoint.universal_checkpoint: a stand-in module.
_mod = types.ModuleType("deepspeed.checkpoint.universal_checkpoint")


@dataclasses.dataclass
class SubparamShape:
    patterns: List[str]
    shape: Tuple[Union[Tuple[int], int]]
    partition_dim: int


SubparamShape.__module__ = _mod.__name__
_mod.SubparamShape = SubparamShape
for _n in ("deepspeed", "deepspeed.checkpoint"):
    sys.modules.setdefault(_n, types.ModuleType(_n))
sys.modules[_mod.__name__] = _mod

STATES = ("fp32", "exp_avg", "exp_avg_sq")
# name → (extra dict entries, shape)
PARAMS = {
    "language_model.embedding.word_embeddings.weight": ({"cat_dim": 0, "vocab_tensor": True}, (50, 8)),
    "language_model.layers.0.attention.query_key_value.weight":
        ({"cat_dim": 0, "sub_param_shape": SubparamShape([r".*query_key_value"], ((16, 8, 8), 8), 0)}, (32, 8)),
    "language_model.layers.0.mlp.dense_h_to_4h.weight": ({"cat_dim": 0, "param_n_sub_params": 2}, (24, 8)),
    "language_model.layers.0.mlp.dense_4h_to_h.weight": ({"cat_dim": 1}, (8, 12)),
    "language_model.layers.0.input_layernorm.weight": ({}, (8,)),
    "language_model.layers.10.input_layernorm.bias": ({}, (8,)),
}
STEP = 123


def make_ucp(root):
    """A universal checkpoint folder root/global_step123 with latest_universal, as DeepSpeed lays it out."""
    g = torch.Generator().manual_seed(7)
    step_dir = root / "global_step123"
    ref = {}
    for name, (extra, shape) in PARAMS.items():
        d = step_dir / "zero" / name
        d.mkdir(parents=True)
        for s in STATES:
            sd = dict(extra)
            t = torch.randn(shape, generator=g)
            if s == "exp_avg" and len(shape) == 2:
                t = t.t().contiguous().t()  # a view with strides (1, rows): loco gathers through them
            sd["param"] = t
            torch.save(sd, d / f"{s}.pt")
            ref[(s, name)] = t.clone()
        torch.save(STEP, d / "step.pt")
    (root / "latest_universal").write_text("global_step123")
    return ref


def load(path):
    has_subparam = "query_key_value" in str(path)
    return torch.load(path, weights_only=not has_subparam)


def loader_slice(sd, tp_rank, tp_world, divisible_by):
    """The slice DeepSpeed's universal loader takes for rank tp_rank of tp_world, before flattening."""
    full = sd["param"]
    if sd.get("vocab_tensor", False):
        m = divisible_by * tp_world
        padded = (full.shape[0] + m - 1) // m * m
        full = torch.nn.functional.pad(full, (0, 0, 0, padded - full.shape[0]), "constant", 0)
    sps = sd.get("sub_param_shape")
    dim = sd.get("cat_dim", 0)
    n_sub = sd.get("param_n_sub_params", 1)
    if sps is not None:
        pd = sps.partition_dim
        sizes = sps.shape[pd] if isinstance(sps.shape[pd], tuple) else (sps.shape[pd],)
        full = full.view([sum(d) if isinstance(d, tuple) else d for d in sps.shape])
        out, off = [], 0
        for s in sizes:
            out.append(full.narrow(pd, off, s).chunk(tp_world, dim=pd)[tp_rank])
            off += s
        return torch.cat(out, dim=pd)
    if n_sub > 1:
        return torch.cat([p.chunk(tp_world, dim=dim)[tp_rank] for p in full.chunk(n_sub, dim=dim)], dim=dim)
    if "cat_dim" not in sd:
        return full  # replicated
    return full.chunk(tp_world, dim)[tp_rank]


class UniversalCheckpoint(TempDirCase):
    def test_read_write_and_reload_with_torch(self):
        ref = make_ucp(self.tmp)
        tool("loco-convert", self.tmp, self.tmp / "ckpt.h5")  # through latest_universal
        with h5py.File(self.tmp / "ckpt.h5", "r") as f:
            self.assertEqual(int(f["state"].attrs["step"]), STEP)
            self.assertEqual(f["state"].attrs["ucp_step_type"], "int")
            for (s, name), t in ref.items():
                ds = f["tensors" if s == "fp32" else f"state/{s}"][name]
                np.testing.assert_array_equal(ds[()], t.numpy(), err_msg=f"{s}/{name}")
                extra = PARAMS[name][0]
                for k, v in extra.items():
                    if k == "sub_param_shape":
                        self.assertIn('"shape":[[16,8,8],8]', ds.attrs[k])
                    else:
                        self.assertEqual(int(ds.attrs[k]), int(v), f"{name}.{k}")
            # Every parameter is there.
            names = list(f["tensors"].keys())
            self.assertEqual(len(names), len(PARAMS))

        out = self.tmp / "out"
        tool("loco-convert", self.tmp / "ckpt.h5", f"{out}/")
        for name, (extra, shape) in PARAMS.items():
            for s in STATES:
                p = out / "zero" / name / f"{s}.pt"
                with zipfile.ZipFile(p) as z:
                    self.assertIsNone(z.testzip(), p)  # every CRC holds
                    self.assertEqual(z.namelist()[0], f"{s}/data.pkl")
                orig = load(self.tmp / "global_step123" / "zero" / name / f"{s}.pt")
                back = load(p)
                self.assertEqual(list(back.keys()), list(orig.keys()), p)
                for k in orig:
                    if torch.is_tensor(orig[k]):
                        self.assertEqual(back[k].dtype, orig[k].dtype)
                        self.assertTrue(torch.equal(back[k], orig[k]), f"{p}: {k}")
                    else:
                        self.assertEqual(type(back[k]), type(orig[k]), f"{p}: {k}")
                        self.assertEqual(back[k], orig[k], f"{p}: {k}")
            step = torch.load(out / "zero" / name / "step.pt", weights_only=True)
            self.assertEqual(type(step), int)
            self.assertEqual(step, STEP)
        # UCP → loco → UCP → loco is bit-exact.
        tool("loco-convert", out, self.tmp / "again.h5")
        tool("loco-inspect", "--diff", self.tmp / "ckpt.h5", self.tmp / "again.h5")

    def test_tensor_parallel_shards_match_the_universal_loader(self):
        make_ucp(self.tmp)
        step_dir = self.tmp / "global_step123"
        for T in (2, 4):
            tool("loco-convert", "--tp", T, "--vocab-divisible-by", 4, step_dir, self.tmp / f"tp{T}.h5")
            for r in range(T):
                with h5py.File(self.tmp / f"tp{T}-{r + 1:05d}-of-{T:05d}.h5", "r") as f:
                    self.assertEqual(int(f.attrs["tp_rank"]), r)
                    for name in PARAMS:
                        for s in STATES:
                            sd = load(step_dir / "zero" / name / f"{s}.pt")
                            want = loader_slice(sd, r, T, 4)
                            got = f["tensors" if s == "fp32" else f"state/{s}"][name][()]
                            np.testing.assert_array_equal(got, want.numpy(), err_msg=f"T={T} rank {r} {s}/{name}")
            tool("loco-convert", "--consolidate", self.tmp / f"tp{T}-00001-of-{T:05d}.h5", self.tmp / f"back{T}.h5")
            tool("loco-inspect", "--diff", step_dir, self.tmp / f"back{T}.h5")


if __name__ == "__main__":
    interop.main()
