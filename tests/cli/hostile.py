#!/usr/bin/env python3
"""Small hostile files for the CLI regression cases of issue 19, written where a case's setup asks:

    python3 hostile.py KIND OUT [ARG]

KIND is one of:
  deep-pt N           a torch.save archive whose tensor sits under N nested _rebuild_parameter calls
  deep-config-json N  a model config (JSON text) whose "sizes" nests N JSON arrays
  deep-config-st N    a safetensors model whose model_config nests N JSON arrays
  deep-config-h5 N    a loco model file (HDF5) whose model_config attribute nests N JSON arrays
  unwritten-h5        a loco model declaring a (2^40, 2^20) chunked float32 dataset never written
  stride0-pt          a torch.save archive of one float viewed as 2^40 elements (strides 0, 0)
  vlen-heap-h5        a loco model whose model_config string lives in a damaged global heap
  long-name-st N      a safetensors model with a tensor name of N bytes
  slash-name-st       a safetensors model with the tensor name "a/b"
  gguf-<what>         a GGUF file with one hostile header field, <what> one of GGUF_HOSTILE's names
                      (huge counts, string and array lengths, nesting, alignment, offsets, dimensions,
                      types, byte order, version, truncation)

The .pt files are built opcode by opcode (pickle protocol 2, the records torch.save writes), so
the cases need neither PyTorch nor a checkpoint made elsewhere.
"""

import json
import struct
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import safetensors_bytes, write_loco  # noqa: E402
import gguf_spec as g  # noqa: E402

MODEL_CONFIG = '{"arch":"mlp","sizes":[2,2]}'


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(v: int) -> bytes:
    if 0 <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _tuple(items: list) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor(numel: int, size: list, stride: list) -> bytes:
    """torch._utils._rebuild_tensor_v2 over FloatStorage '0' of numel elements."""
    pid = _tuple([_str("storage"), _global("torch", "FloatStorage"), _str("0"), _str("cpu"), _int(numel)])
    hooks = _global("collections", "OrderedDict") + b")R"
    args = _tuple([pid + b"Q", _int(0), _tuple([_int(s) for s in size]), _tuple([_int(s) for s in stride]),
                   b"\x89", hooks])
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _torch_zip(path: str, pickle: bytes, storage: bytes) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", storage)
        z.writestr("archive/version", "3\n")


def deep_pt(path: str, levels: int) -> None:
    # Stack: the callable N times (memoized), the tensor, then N times (TUPLE1, REDUCE):
    # _rebuild_parameter(_rebuild_parameter(... _rebuild_tensor_v2(...) ...)), 4 bytes a level.
    wrap = _global("torch._utils", "_rebuild_parameter") + b"q\x00" + b"h\x00" * (levels - 1)
    body = wrap + _tensor(2, [2], [1]) + b"\x85R" * levels
    _torch_zip(path, b"\x80\x02}" + _str("w") + body + b"s.", struct.pack("<2f", 1.0, 2.0))


def stride0_pt(path: str) -> None:
    body = _tensor(1, [2**20, 2**20], [0, 0])
    _torch_zip(path, b"\x80\x02}" + _str("w") + body + b"s.", struct.pack("<f", 1.0))


def deep_config(levels: int) -> str:
    return '{"arch":"mlp","sizes":' + "[" * levels + "]" * levels + "}"


def model_tensors() -> dict:
    return {"w": np.ones((2, 2), dtype=np.float32)}


def unwritten_h5(path: str) -> None:
    write_loco(path, model_tensors(), {"model_config": MODEL_CONFIG})
    with h5py.File(path, "a") as f:
        f["tensors"].create_dataset("huge", shape=(2**40, 2**20), dtype="<f4", chunks=(1, 1024))


def vlen_heap_h5(path: str) -> None:
    """A global heap object whose size field claims far more bytes than its collection holds:
    libhdf5 1.10 reads past the collection while loading it (SIGSEGV or a hang)."""
    write_loco(path, model_tensors(), {"model_config": MODEL_CONFIG})
    data = bytearray(Path(path).read_bytes())
    marker = MODEL_CONFIG.encode()
    at = data.find(marker)
    assert at >= 16 and data.find(b"GCOL") >= 0, "no global heap object holding model_config"
    # The object header before the data: index (2 bytes), reference count (2), reserved (4), size (8).
    size_at = at - 8
    assert struct.unpack_from("<Q", data, size_at)[0] == len(marker), "unexpected global heap layout"
    struct.pack_into("<Q", data, size_at, 2**62)
    Path(path).write_bytes(bytes(data))


def _gguf_w():
    return g.Tensor.of("w", np.arange(4, dtype=np.float32).reshape(2, 2))


def _gguf_raw_kv(key: bytes, body: bytes) -> bytes:
    """A file with one key/value whose value bytes (after the key) are given as they are."""
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key + body


def _deep_array(levels: int) -> bytes:
    body = struct.pack("<I", g.ARR)
    for _ in range(levels - 1):
        body += struct.pack("<IQ", g.ARR, 1)
    return body + struct.pack("<IQ", g.U8, 0)


GGUF_HOSTILE = {
    "tensor-count": lambda: g.gguf_bytes([_gguf_w()], n_tensors=2**63),
    "kv-count": lambda: g.gguf_bytes([], [("a", g.U8, 1)], n_kv=2**62),
    "string-length": lambda: b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**62) + b"key" + b"\0" * 64,
    "array-length": lambda: _gguf_raw_kv(b"a", struct.pack("<IIQ", g.ARR, g.U32, 2**60)),
    "string-array-length": lambda: _gguf_raw_kv(b"a", struct.pack("<IIQ", g.ARR, g.STR, 2**61)),
    "deep-array": lambda: _gguf_raw_kv(b"a", _deep_array(100000)),
    "value-type": lambda: _gguf_raw_kv(b"a", struct.pack("<I", 13) + b"\0" * 8),
    "bool": lambda: g.gguf_bytes([], [("a", g.BOOL, 2)]),
    "alignment-3": lambda: g.gguf_bytes([_gguf_w()], [("general.alignment", g.U32, 3)]),
    "alignment-type": lambda: g.gguf_bytes([_gguf_w()], [("general.alignment", g.I32, 32)]),
    "alignment-huge": lambda: g.gguf_bytes([_gguf_w()], [("general.alignment", g.U32, 2**31)], alignment=32),
    "offset-past-end": lambda: g.gguf_bytes([_gguf_w()], offsets=[2**40]),
    "offset-misaligned": lambda: g.gguf_bytes([_gguf_w()], offsets=[4]),
    "dims-product": lambda: g.gguf_bytes([g.Tensor("w", "F32", (2**40, 2**40), b"")]),
    "dims-count": lambda: b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + struct.pack("<Q", 1) + b"w" +
                          struct.pack("<I", 2**32 - 1) + b"\0" * 64,
    "q4-row": lambda: g.gguf_bytes([g.Tensor("w", "Q4_0", (2, 16), g.q4_0(1.0, [0] * 32))]),
    "type-q5_0": lambda: g.gguf_bytes([g.Tensor("w", "Q5_0", (32,), b"\0" * 22)]),
    "type-unknown": lambda: g.gguf_bytes([g.Tensor("w", 77, (2, 2), b"\0" * 16)]),
    "big-endian": lambda: b"GGUF" + struct.pack(">IQQ", 3, 0, 0),
    "version-1": lambda: b"GGUF" + struct.pack("<III", 1, 0, 0),
    "truncated": lambda: g.gguf_bytes([g.Tensor.of("w", np.ones((64, 64), np.float32))])[:-100],
}


def main(argv: list) -> None:
    kind, out = argv[0], argv[1]
    arg = int(argv[2]) if len(argv) > 2 else 0
    if kind == "deep-pt":
        deep_pt(out, arg)
    elif kind == "deep-config-json":
        Path(out).write_text(deep_config(arg))
    elif kind == "deep-config-st":
        Path(out).write_bytes(safetensors_bytes(model_tensors(), {"format": "pt", "model_config": deep_config(arg)}))
    elif kind == "deep-config-h5":
        with h5py.File(out, "w", libver="latest") as f:  # dense attribute storage: no 64 KB limit
            f.attrs["loco_format"] = "loco"
            f.attrs["loco_version"] = np.int64(1)
            f.attrs["kind"] = "model"
            f.attrs["model_config"] = deep_config(arg)
            f.create_group("tensors").create_dataset("w", data=model_tensors()["w"])
    elif kind == "unwritten-h5":
        unwritten_h5(out)
    elif kind == "stride0-pt":
        stride0_pt(out)
    elif kind == "vlen-heap-h5":
        vlen_heap_h5(out)
    elif kind == "long-name-st":
        Path(out).write_bytes(safetensors_bytes({"x" * arg: np.ones(2, dtype=np.float32)}, {"format": "pt"}))
    elif kind == "slash-name-st":
        Path(out).write_bytes(safetensors_bytes({"a/b": np.ones(2, dtype=np.float32)}, {"format": "pt"}))
    elif kind.startswith("gguf-") and kind[5:] in GGUF_HOSTILE:
        Path(out).write_bytes(GGUF_HOSTILE[kind[5:]]())
    else:
        sys.exit(f"hostile.py: unknown kind {kind}")


if __name__ == "__main__":
    main(sys.argv[1:])
