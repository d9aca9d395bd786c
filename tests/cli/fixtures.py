"""Builds the small input files the CLI and interop tests run the tools on, without using loco.

Loco files are written with h5py in the layout of man 5 loco-format, safetensors files byte by byte with
struct and json, and the broken files by corrupting good ones. Run as a script to (re)make the
fixtures in a folder: python3 fixtures.py DIR. Python 3.11 stdlib, numpy and h5py only.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

try:
    import h5py
except ImportError:  # the safetensors writers and the bfloat16 helpers work without it
    h5py = None

# ------------------------------------------------------------------------------------------------
# bfloat16, which numpy lacks: stored as uint16, the top half of a float32.


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns, rounding to nearest even (NaN stays a quiet NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns → float32 (exact)."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


# ------------------------------------------------------------------------------------------------
# Loco HDF5 files written with h5py.


class BF16:
    """A tensor to store as bfloat16: bits holds the uint16 patterns."""

    def __init__(self, bits: np.ndarray):
        self.bits = np.asarray(bits, dtype=np.uint16)

    @classmethod
    def from_f32(cls, x) -> "BF16":
        return cls(f32_to_bf16_bits(np.asarray(x, dtype=np.float32)))


def write_loco(path, tensors: dict, attrs: dict | None = None, kind: str = "model", *, track_order: bool = True,
               version=1, marker="loco", groups: dict | None = None, group_attrs: dict | None = None,
               dataset_opts: dict | None = None):
    """Writes a loco file with h5py: root attributes, /tensors/<name> datasets (in dict order), and
    optional other groups ({"state/exp_avg": {name: array}}). BF16 values become uint16 datasets
    with dtype="bfloat16". track_order=False writes groups without creation-order tracking, as
    programs other than loco may. marker/version/kind None leave that root attribute out."""
    path = Path(path)
    with h5py.File(path, "w", track_order=track_order) as f:
        if marker is not None:
            f.attrs["loco_format"] = marker
        if version is not None:
            f.attrs["loco_version"] = np.int64(version)
        if kind is not None:
            f.attrs["kind"] = kind
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        all_groups = {"tensors": tensors, **(groups or {})}
        for gname, members in all_groups.items():
            g = f.require_group(gname) if not track_order else _require_ordered(f, gname)
            for name, value in members.items():
                opts = (dataset_opts or {}).get(f"{gname}/{name}", {})
                if isinstance(value, BF16):
                    ds = g.create_dataset(name, data=value.bits, dtype="<u2", **opts)
                    ds.attrs["dtype"] = "bfloat16"
                else:
                    arr = np.asarray(value)
                    ds = g.create_dataset(name, data=arr, **opts)
        for gname, a in (group_attrs or {}).items():
            for k, v in a.items():
                f[gname].attrs[k] = v
    return path


def _require_ordered(f, gname: str):
    g = f
    for part in gname.split("/"):
        g = g[part] if part in g else g.create_group(part, track_order=True)
    return g


# ------------------------------------------------------------------------------------------------
# safetensors written by hand, following the format's specification.

ST_DTYPES = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16", np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64", np.dtype("uint32"): "U32", np.dtype("uint16"): "U16", np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def st_entries(tensors: dict):
    """(name, dtype string, shape, little-endian bytes) for each tensor, in dict order."""
    out = []
    for name, value in tensors.items():
        if isinstance(value, BF16):
            out.append((name, "BF16", list(value.bits.shape), value.bits.astype("<u2").tobytes()))
        else:
            arr = np.asarray(value)
            le = arr.astype(arr.dtype.newbyteorder("<")) if arr.dtype.byteorder == ">" else arr
            out.append((name, ST_DTYPES[arr.dtype.newbyteorder("=")], list(arr.shape), np.ascontiguousarray(le).tobytes()))
    return out


def safetensors_bytes(tensors: dict, metadata: dict | None = None, *, pad_to: int = 8) -> bytes:
    """A valid safetensors file: tensors laid out in dict order, header padded with spaces."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dt, shape, raw in st_entries(tensors):
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return raw_safetensors(json.dumps(header, separators=(",", ":")), data, pad_to=pad_to)


def raw_safetensors(header_text: str | bytes, data: bytes, *, pad_to: int = 8, length: int | None = None) -> bytes:
    """[u64 N][header][data] from header text as given (for hostile headers); length overrides N."""
    h = header_text.encode() if isinstance(header_text, str) else header_text
    if pad_to > 1:
        h += b" " * (-len(h) % pad_to)
    return struct.pack("<Q", len(h) if length is None else length) + h + data


ST_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
            "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


class SafetensorsError(ValueError):
    """A file that breaks the safetensors specification."""


def read_safetensors(path):
    """A strict, minimal safetensors reader written from the format's specification:
    [u64 little-endian N][N bytes of UTF-8 JSON, optionally padded with spaces][data buffer].
    Returns (header_text, metadata or None, {name: (dtype, numpy array, (begin, end))}); BF16
    arrays hold the uint16 bit patterns. Raises SafetensorsError for anything off the spec."""
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise SafetensorsError("shorter than the 8-byte length")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise SafetensorsError(f"header length {n} runs past the end")
    try:
        text = raw[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        raise SafetensorsError(f"header is not UTF-8: {e}") from None
    if not text.startswith("{"):
        raise SafetensorsError("header does not start with '{'")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise SafetensorsError(f"duplicate keys in {keys}")
        return dict(pairs)

    stripped = text.rstrip(" ")
    try:
        header = json.loads(stripped, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise SafetensorsError(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not an object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and
                                     all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise SafetensorsError("__metadata__ is not a map of strings")
    buffer = raw[8 + n:]
    tensors, spans = {}, []
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{name}: entry is not {{dtype, shape, data_offsets}}: {e}")
        dt, shape, off = e["dtype"], e["shape"], e["data_offsets"]
        if dt not in ST_NUMPY:
            raise SafetensorsError(f"{name}: dtype {dt!r}")
        if not (isinstance(shape, list) and all(isinstance(x, int) and x >= 0 for x in shape)):
            raise SafetensorsError(f"{name}: shape {shape!r}")
        if not (isinstance(off, list) and len(off) == 2 and all(isinstance(x, int) for x in off) and 0 <= off[0] <= off[1]):
            raise SafetensorsError(f"{name}: data_offsets {off!r}")
        itemsize = np.dtype(ST_NUMPY[dt]).itemsize
        if off[1] - off[0] != int(np.prod(shape, dtype=np.int64)) * itemsize:
            raise SafetensorsError(f"{name}: {off[1] - off[0]} bytes for {dt} {shape}")
        arr = np.frombuffer(buffer[off[0]:off[1]], dtype=ST_NUMPY[dt]).reshape(shape)
        tensors[name] = (dt, arr, tuple(off))
        spans.append((off[0], off[1], name))
    end = 0
    for b, e, name in sorted(spans):
        if b != end:
            raise SafetensorsError(f"{name}: begins at {b}, expected {end} (gap or overlap)")
        end = e
    if end != len(buffer):
        raise SafetensorsError(f"data buffer holds {len(buffer)} bytes, the tensors cover {end}")
    return text, metadata, tensors


# ------------------------------------------------------------------------------------------------
# The fixture set.


def model_tensors() -> dict:
    """The tensors of model.h5 / model.safetensors: every dtype loco holds, in a non-sorted order."""
    i = np.arange(12, dtype=np.float64)
    return {
        "fc1.weight": (np.sin(i * 0.7) * 0.5).astype(np.float32).reshape(4, 3),
        "fc1.bias": np.array([0.5, -0.25, 1e-3, -7.0], dtype=np.float32),
        "emb.weight": (np.cos(np.arange(10) * 0.3) * 3).astype(np.float16).reshape(5, 2),
        "head.weight": BF16.from_f32(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)),
        "scale": np.float32(2.5),
        "w64": np.array([[1 / 3, -2 / 7], [1e-300, 1e300]], dtype=np.float64),
        "ids": np.array([-1, 0, 2147483647], dtype=np.int32),
        "counts": np.array([-(2**62), 2**62], dtype=np.int64),
        "mask": np.array([True, False, True]),
        "bytes": np.array([0, 1, 128, 255], dtype=np.uint8),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


MODEL_ATTRS = {"model_config": '{"type": "mlp", "hidden": [4]}', "round": np.int64(3), "samples": np.int64(100),
               "note": "hello"}

# stats.h5: tensor x has known statistics over its finite values [-2, -1, 0, 1, 2, 4].
STATS_X = np.array([-2, -1, 0, 1, 2, 4, np.nan, np.inf], dtype=np.float32)


def round_trip_f32() -> np.ndarray:
    """float32 values that exercise rounding to f16/bf16: normal values spread over magnitudes,
    values just past a rounding midpoint, f16 subnormals, and zeros of both signs."""
    rng = np.random.default_rng(20240607)
    spread = (rng.standard_normal(200) * np.exp2(rng.integers(-12, 12, 200))).astype(np.float32)
    near_mid = np.array([1 + 2**-8 + 2**-20, -(1 + 2**-8 + 2**-20), 1 + 2**-11 + 2**-20, 3 * (1 + 2**-9)],
                        dtype=np.float32)
    sub = np.array([2**-20, -3 * 2**-22, 2**-16 + 2**-24], dtype=np.float32)
    return np.concatenate([spread, near_mid, sub, np.array([0.0, -0.0], dtype=np.float32)])


def big_values() -> np.ndarray:
    """big.h5's tensor: several of the 65536-element blocks statistics are computed in."""
    x = (np.sin(np.arange(300_001) * 1e-3) * 3 + 0.1).astype(np.float32)
    x[[5, 70_000]] = np.nan
    x[200_000] = -np.inf
    return x


def make(dir_: str | os.PathLike) -> Path:
    """Writes every fixture into dir_ (created; existing fixtures are replaced) and returns it."""
    d = Path(dir_)
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    t = model_tensors()
    write_loco(d / "model.h5", t, MODEL_ATTRS)
    (d / "model.safetensors").write_bytes(
        safetensors_bytes(t, {"format": "pt", "model_config": MODEL_ATTRS["model_config"], "note": "hello"}))
    write_loco(d / "stats.h5", {
        "x": STATS_X,
        "y": np.array([[1.5, -2.5, 3.25], [0.0, 10.0, -0.125]], dtype=np.float64),
        "allnan": np.full(3, np.nan, dtype=np.float32),
    })

    # Variants of model.h5 for --diff.
    close = dict(t)
    w = close["fc1.weight"].copy()
    w[0, 0] = np.float32(0.501)
    close["fc1.weight"] = w
    t0 = dict(t)
    w0 = t0["fc1.weight"].copy()
    w0[0, 0] = np.float32(0.5)
    t0["fc1.weight"] = w0
    write_loco(d / "base.h5", t0, MODEL_ATTRS)
    write_loco(d / "close.h5", close, MODEL_ATTRS)
    write_loco(d / "shape.h5", {**t, "fc1.bias": np.zeros(5, dtype=np.float32)}, MODEL_ATTRS)
    write_loco(d / "dtype.h5", {**t, "fc1.bias": t["fc1.bias"].astype(np.float64)}, MODEL_ATTRS)
    write_loco(d / "extra.h5", {**t, "extra": np.ones(2, dtype=np.float32)}, MODEL_ATTRS)
    write_loco(d / "big.h5", {"big": big_values()})
    write_loco(d / "nan.h5", {"x": STATS_X})
    nan2 = STATS_X.copy()
    nan2[7] = -np.inf
    write_loco(d / "nan2.h5", {"x": nan2})

    # Floats for --dtype round trips.
    v = round_trip_f32()
    floats = {"v": v, "m": v[:200].reshape(20, 10)}
    write_loco(d / "floats.h5", floats)
    # The same rounded by numpy (float16) and by f32_to_bf16_bits: what --dtype must give, bit for bit.
    (d / "floats_f16.safetensors").write_bytes(safetensors_bytes({k: x.astype(np.float16) for k, x in floats.items()}))
    (d / "floats_bf16.safetensors").write_bytes(safetensors_bytes({k: BF16.from_f32(x) for k, x in floats.items()}))

    # Other kinds and groups.
    write_loco(d / "data.h5", {}, {"classes": np.int64(3)}, kind="data",
               groups={"data": {"x": np.ones((4, 3), dtype=np.float32), "y": np.array([0, 1, 2, 1], dtype=np.int32)}})
    write_loco(d / "state.h5", {"w": np.ones(3, dtype=np.float32)}, kind="model",
               groups={"state/exp_avg": {"w": np.full(3, 0.5, dtype=np.float32)}},
               group_attrs={"state": {"step": np.int64(7)}})

    # HDF5 files that are not (valid) loco files.
    with h5py.File(d / "not_loco.h5", "w") as f:
        f.create_dataset("x", data=np.ones(3))
    write_loco(d / "wrong_version.h5", {"x": np.ones(2, dtype=np.float32)}, version=2)
    write_loco(d / "no_version.h5", {"x": np.ones(2, dtype=np.float32)}, version=None)
    write_loco(d / "wrong_kind.h5", {"x": np.ones(2, dtype=np.float32)}, kind="banana")
    write_loco(d / "wrong_marker.h5", {"x": np.ones(2, dtype=np.float32)}, marker="LOCO")
    write_loco(d / "complex.h5", {"z": np.array([1 + 2j], dtype=np.complex64)})
    raw = (d / "model.h5").read_bytes()
    (d / "truncated.h5").write_bytes(raw[: len(raw) // 2])
    (d / "truncated_sig.h5").write_bytes(raw[:6])
    bad = bytearray(raw)
    bad[8:64] = b"\xff" * 56  # superblock fields after the signature
    (d / "corrupt.h5").write_bytes(bytes(bad))
    (d / "empty.h5").write_bytes(b"")
    (d / "text.txt").write_text("hello, I am not a tensor file\n")
    (d / "folder.h5").mkdir()

    # A loco file whose second tensor's (gzip) chunk is garbage: it opens, then fails mid-read.
    write_loco(d / "bad_chunk.h5", {"a": np.arange(64, dtype=np.float32), "b": np.arange(4096, dtype=np.float32)},
               dataset_opts={"tensors/b": {"chunks": (4096,), "compression": "gzip"}})
    with h5py.File(d / "bad_chunk.h5", "r") as f:
        info = f["tensors/b"].id.get_chunk_info(0)
    bad = bytearray((d / "bad_chunk.h5").read_bytes())
    bad[info.byte_offset: info.byte_offset + info.size] = b"\x5a" * info.size
    (d / "bad_chunk.h5").write_bytes(bytes(bad))

    # Hostile safetensors headers; each must be refused (exit 4) without a crash.
    ok_entry = '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}'
    data8 = np.array([1, 2], dtype="<f4").tobytes()
    hostile = {
        "st_len_over_limit": raw_safetensors("{" + ok_entry + "}", data8, length=100_000_001),
        "st_len_past_end": raw_safetensors("{" + ok_entry + "}", data8, length=4096),
        "st_len_huge": raw_safetensors("{" + ok_entry + "}", data8, length=2**64 - 1),
        "st_offsets_oob": raw_safetensors('{"a":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}}', data8),
        "st_offsets_size": raw_safetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}', data8 + b"\0" * 4),
        "st_overlap": raw_safetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                      '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', data8 + data8[:4]),
        "st_gap": raw_safetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                  '"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}', data8 * 2),
        "st_end_before_begin": raw_safetensors('{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},'
                                               '"b":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', data8),
        "st_trailing": raw_safetensors("{" + ok_entry + "}", data8 + b"xyz"),
        "st_truncated_data": raw_safetensors("{" + ok_entry + "}", data8[:5]),
        "st_unknown_dtype": raw_safetensors('{"a":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}', data8),
        "st_unsupported_dtype": raw_safetensors('{"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}', data8),
        "st_duplicate_name": raw_safetensors("{" + ok_entry + "," + ok_entry + "}", data8),
        "st_duplicate_key": raw_safetensors('{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
                                            data8),
        "st_extra_key": raw_safetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', data8),
        "st_missing_key": raw_safetensors('{"a":{"dtype":"F32","data_offsets":[0,8]}}', data8),
        "st_negative": raw_safetensors('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', data8),
        "st_float_shape": raw_safetensors('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', data8),
        "st_huge_shape": raw_safetensors('{"a":{"dtype":"F32","shape":[281474976710655,281474976710655],'
                                         '"data_offsets":[0,8]}}', data8),
        "st_three_offsets": raw_safetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}', data8),
        "st_bad_json": raw_safetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]', data8),
        "st_not_object": raw_safetensors('{"a":[1,2]}', data8),
        "st_metadata_number": raw_safetensors('{"__metadata__":{"n":1},' + ok_entry + "}", data8),
        "st_bad_utf8": raw_safetensors(b'{"a\xff":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', data8),
        "st_header_only_length": struct.pack("<Q", 16) + b"{",
    }
    for name, content in hostile.items():
        (d / f"{name}.safetensors").write_bytes(content)
    return d


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fixtures.py DIR")
    print(make(sys.argv[1]))
