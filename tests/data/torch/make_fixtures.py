#!/usr/bin/env python3
"""Writes the small torch.save fixtures of tests/unit/io/test_torch.cpp (run with python3-torch).

Values are simple functions of the index so the C++ test recomputes them: base[i] = 0.5*i - 3
over a [4, 6] float32 tensor, and views of it keep their storage offsets and strides.
"""

import collections
import io
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))


def out(name):
    return os.path.join(here, name)


def base():
    return (torch.arange(24, dtype=torch.float32) * 0.5 - 3).reshape(4, 6)


class NotAllowed:
    """Any class outside the allow-list: its pickle must be refused."""
    def __init__(self):
        self.x = 1


def state_dict():
    b = base()
    emb = torch.nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3) - 2.5)
    sd = collections.OrderedDict()
    sd["base"] = b                                      # contiguous
    sd["transposed"] = b.t()                            # [6, 4], strides (1, 6)
    sd["rows"] = b[1:3]                                 # offset 6
    sd["column"] = b[:, 2]                              # [4], stride 6, offset 2
    sd["block"] = b[1:4, 2:5]                           # [3, 3], strides (6, 1), offset 8
    sd["expanded"] = torch.tensor([1.5, -2.0, 3.25]).expand(2, 3)  # stride (0, 1)
    sd["scalar"] = torch.tensor(7.5, dtype=torch.float64)
    sd["empty"] = torch.zeros(0, 5)
    sd["bf16"] = torch.tensor([1.0, -2.5, 3.140625, 65280.0], dtype=torch.bfloat16)
    sd["f16"] = torch.tensor([[0.5, -1.0], [2048.0, 0.0009765625]], dtype=torch.float16)
    sd["i64"] = torch.tensor([-(2**40), 0, 2**40 + 3], dtype=torch.int64)
    sd["i32"] = torch.tensor([-7, 8], dtype=torch.int32)
    sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    sd["mask"] = torch.tensor([True, False, True])
    sd["emb.weight"] = emb                               # a Parameter
    sd["head.weight"] = emb                              # tied: the same storage
    return sd


def main():
    torch.save(state_dict(), out("state.pt"))
    # Nested dicts, lists and scalars, saved to a stream (record folder "archive/"), protocol 4.
    nested = {"model": {"layer": {"w": base()[0:2, 0:2].clone(), "b": torch.tensor([1.0, 2.0])}},
              "optim": [torch.tensor([3.0])], "epoch": 3, "lr": 0.125, "name": "run-1", "done": True,
              "nothing": None}
    buf = io.BytesIO()
    torch.save(nested, buf, pickle_protocol=4)
    with open(out("nested.pt"), "wb") as f:
        f.write(buf.getvalue())
    torch.save({"w": torch.ones(2)}, out("legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save({"evil": NotAllowed(), "w": torch.ones(2)}, out("evil.pt"))
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), out("script.pt"))
    total = sum(os.path.getsize(out(n)) for n in os.listdir(here) if n.endswith(".pt"))
    print(f"fixtures: {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
