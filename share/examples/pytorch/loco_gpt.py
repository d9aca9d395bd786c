"""loco's GPT (man 5 loco-format; the model of loco-init's "gpt" configs) in PyTorch, and the file
access a PyTorch worker needs: loco's model and shard files (HDF5, read with h5py) and
safetensors (read and written from the specification: the format is a length, a JSON header and
raw little-endian data, so no extra package is needed).

Parameter names and shapes are loco's, so `model.state_dict()` saved as safetensors or with
torch.save is a model file every loco tool reads, and `loco-delta` turns it into a delta.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-5  # loco's layer norm (model/gpt.cpp)


class Attention(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)


class Mlp(nn.Module):
    def __init__(self, d: int, ratio: int):
        super().__init__()
        self.fc, self.proj = nn.Linear(d, ratio * d), nn.Linear(ratio * d, d)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, ratio: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.attn = nn.LayerNorm(d, eps=LN_EPS), Attention(d)
        self.ln2, self.mlp = nn.LayerNorm(d, eps=LN_EPS), Mlp(d, ratio)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.attn.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)).masked_fill(mask[:t, :t], float("-inf"))
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.attn.proj(y)
        return x + self.mlp.proj(F.gelu(self.mlp.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    """Pre-norm GPT with learned positions and tanh-GELU; names as loco's (wte, wpe, blocks.L.*, ln_f, head)."""

    def __init__(self, config: dict):
        super().__init__()
        if config.get("arch") != "gpt":
            raise ValueError(f"not a GPT model_config: {config}")
        self.config = config
        d, ctx = config["d_model"], config["ctx"]
        self.wte, self.wpe = nn.Embedding(config["vocab"], d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, config["heads"], config.get("mlp_ratio", 4)) for _ in range(config["layers"]))
        self.ln_f = nn.LayerNorm(d, eps=LN_EPS)
        self.tied = bool(config.get("tie_embeddings", False))
        if not self.tied:
            self.head = nn.Linear(d, config["vocab"], bias=False)
        self.register_buffer("mask", torch.triu(torch.ones(ctx, ctx, dtype=torch.bool), 1), persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x, self.mask)
        x = self.ln_f(x)
        return x @ self.wte.weight.T if self.tied else self.head(x)


# --- files ---------------------------------------------------------------------------------------

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (float32, float16, float64; bfloat16 widened to float32) and __metadata__ of a file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        raw = data[a:b]
        if e["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_ST_DTYPES[e["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.reshape(e["shape"]).copy())
    return out, meta


def write_safetensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Writes float32 tensors atomically (a temporary file beside path, then a rename)."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = tensors[name].detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        blobs.append(arr.tobytes())
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    _atomic_write(path, lambda f: (f.write(struct.pack("<Q", len(text))), f.write(text), [f.write(b) for b in blobs]))


def _atomic_write(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def atomic_torch_save(obj, path: str) -> None:
    _atomic_write(path, lambda f: torch.save(obj, f))


def read_model(path: str) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(model_config, tensors as float32, root attributes) of a loco model file (.h5) or safetensors."""
    if path.endswith(".safetensors"):
        tensors, meta = read_safetensors(path)
        if "model_config" not in meta:
            raise ValueError(f"{path}: no model_config in __metadata__")
        return json.loads(meta["model_config"]), {k: v.float() for k, v in tensors.items()}, meta
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        if attrs.get("kind") != "model":
            raise ValueError(f"{path}: kind {attrs.get('kind')!r}, expected a model")
        tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in f["tensors"].items()}
    return json.loads(attrs["model_config"]), tensors, attrs


def read_tokens(path: str) -> torch.Tensor:
    """/data/tokens of a loco text shard (loco-shard --source text) as int64."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") not in ("data", b"data") or "data/tokens" not in f:
            raise ValueError(f"{path}: not a loco token shard (kind data with /data/tokens)")
        return torch.from_numpy(np.asarray(f["data/tokens"]).astype(np.int64))
