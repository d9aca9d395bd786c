#!/usr/bin/env python3
"""Writes the tiny DeepSpeed universal checkpoint folder of tests/unit/io/test_ucp.cpp (run with
python3-torch): ckpt/zero/<param>/{fp32,exp_avg,exp_avg_sq,step}.pt laid out as DeepSpeed's
ds_to_universal.py writes them (torch.save of a plain dict, 'param' last).

Values are functions of the index so the C++ test recomputes them: element i of state s (fp32 0,
exp_avg 1, exp_avg_sq 2) of param p (emb 0, qkv 1) is 0.25*i - 1 + s + 10*p.
  emb.weight  [3, 2]: {'cat_dim': 0, 'vocab_tensor': True}
  qkv.weight  [8, 1]: {'cat_dim': 0, 'sub_param_shape': SubparamShape(['qkv'], ((4, 2, 2), 1), 0)}
  step.pt: torch.tensor(5.0) (PyTorch's Adam keeps its step as a float tensor)
"""

import dataclasses
import os
import shutil
import sys
import types
from typing import List, Tuple, Union

import torch

here = os.path.dirname(os.path.abspath(__file__))

# DeepSpeed defines SubparamShape in deepspeed.checkpoint.universal_checkpoint; a stand-in module
# gives the pickle the same global without DeepSpeed installed.
mod = types.ModuleType("deepspeed.checkpoint.universal_checkpoint")


@dataclasses.dataclass
class SubparamShape:
    patterns: List[str]
    shape: Tuple[Union[Tuple[int], int]]
    partition_dim: int


SubparamShape.__module__ = mod.__name__
SubparamShape.__qualname__ = "SubparamShape"
mod.SubparamShape = SubparamShape
for name in ("deepspeed", "deepspeed.checkpoint"):
    sys.modules.setdefault(name, types.ModuleType(name))
sys.modules[mod.__name__] = mod

PARAMS = [
    ("emb.weight", {"cat_dim": 0, "vocab_tensor": True}, (3, 2)),
    ("qkv.weight", {"cat_dim": 0, "sub_param_shape": SubparamShape(["qkv"], ((4, 2, 2), 1), 0)}, (8, 1)),
]


def values(p, s, shape):
    n = 1
    for d in shape:
        n *= d
    return (torch.arange(n, dtype=torch.float32) * 0.25 - 1 + s + 10 * p).reshape(shape)


def main():
    root = os.path.join(here, "ckpt")
    shutil.rmtree(root, ignore_errors=True)
    for p, (name, attrs, shape) in enumerate(PARAMS):
        d = os.path.join(root, "zero", name)
        os.makedirs(d)
        for s, state in enumerate(("fp32", "exp_avg", "exp_avg_sq")):
            sd = dict(attrs)
            sd["param"] = values(p, s, shape)
            torch.save(sd, os.path.join(d, state + ".pt"))
        torch.save(torch.tensor(5.0), os.path.join(d, "step.pt"))
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(root) for f in fs)
    print(f"fixture: {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
