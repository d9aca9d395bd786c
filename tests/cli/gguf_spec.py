"""A GGUF writer and reader for the tests, written from the format's specification (ggml-org/ggml
docs/gguf.md), independent of loco's code: no Debian or npm package writes GGUF (python3-gguf is
not in this Debian release; npm's @huggingface/gguf only parses and edits headers).

Layout: "GGUF", u32 version, u64 tensor count, u64 key/value count, key/values, tensor infos
(string name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset relative to the
data section), zero padding to ALIGNMENT (general.alignment, default 32), tensor data, each tensor
at a multiple of ALIGNMENT. Quantized blocks (32 elements) as ggml-common.h lays them out:
Q8_0 {f16 d; i8 qs[32]}, Q4_0 {f16 d; u8 qs[16]}, Q4_1 {f16 d; f16 m; u8 qs[16]}; byte j of qs
holds element j in its low nibble and element j + 16 in its high nibble.
"""

import struct

import numpy as np

# gguf_metadata_value_type
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
TYPE_NAMES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"]
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B", U64: "<Q",
          I64: "<q", F64: "<d"}
# ggml_type ids
GGML = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q8_0": 8, "Q4_K": 12, "I8": 24, "I16": 25, "I32": 26,
        "I64": 27, "F64": 28, "BF16": 30}
NUMPY = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4", "I64": "<i8"}
BLOCK_BYTES = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}


def _str(b) -> bytes:
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<Q", len(b)) + b


def value_bytes(vtype: int, value) -> bytes:
    """One value; an array is (item_type, [items]) (items of an array of arrays are such pairs)."""
    if vtype == STR:
        return _str(value)
    if vtype == ARR:
        itype, items = value
        return struct.pack("<IQ", itype, len(items)) + b"".join(value_bytes(itype, v) for v in items)
    return struct.pack(SCALAR[vtype], value)


def kv_bytes(kvs) -> bytes:
    """kvs: [(key, type, value)]."""
    return b"".join(_str(k) + struct.pack("<I", t) + value_bytes(t, v) for k, t, v in kvs)


class Tensor:
    """A tensor to write: name, ggml type name, loco (row-major) shape and its raw data bytes."""

    def __init__(self, name, gtype, shape, raw):
        self.name, self.gtype, self.shape, self.raw = name, gtype, tuple(shape), raw

    @staticmethod
    def of(name, array, gtype=None):
        gtype = gtype or {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<f8"): "F64",
                          np.dtype("i1"): "I8", np.dtype("<i2"): "I16", np.dtype("<i4"): "I32",
                          np.dtype("<i8"): "I64"}[array.dtype]
        return Tensor(name, gtype, array.shape, np.ascontiguousarray(array).tobytes())


def gguf_bytes(tensors, kvs=(), *, version=3, alignment=32, offsets=None, n_tensors=None, n_kv=None) -> bytes:
    """A GGUF file: tensors (Tensor) laid out in order, each padded to alignment. offsets, n_tensors
    and n_kv override what is written (for hostile files)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv) + kv_bytes(kvs)
    data, infos = b"", b""
    for i, t in enumerate(tensors):
        at = len(data) if offsets is None else offsets[i]
        ne = list(reversed(t.shape))  # innermost first
        infos += _str(t.name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", GGML.get(t.gtype, t.gtype), at)  # a name, or a raw id
        data += t.raw + b"\0" * (-len(t.raw) % alignment)
    head += infos
    head += b"\0" * (-len(head) % alignment)
    return head + data


# Quantized blocks from explicit scales and integer codes (hand-checkable values).

def q8_0(d: float, qs) -> bytes:
    return np.float16(d).tobytes() + np.asarray(qs, dtype=np.int8).tobytes()


def _nibbles(qs) -> bytes:
    qs = np.asarray(qs, dtype=np.uint8)
    return (qs[:16] | (qs[16:] << 4)).astype(np.uint8).tobytes()


def q4_0(d: float, qs) -> bytes:
    return np.float16(d).tobytes() + _nibbles(qs)


def q4_1(d: float, m: float, qs) -> bytes:
    return np.float16(d).tobytes() + np.float16(m).tobytes() + _nibbles(qs)


# Reading

class GgufError(ValueError):
    pass


def read_gguf(path):
    """(version, [(key, type, value)], {name: (ggml type name, loco shape, raw bytes)}, alignment)."""
    with open(path, "rb") as f:
        raw = f.read()
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(raw):
            raise GgufError(f"truncated at {pos}")
        b = raw[pos:pos + n]
        pos += n
        return b

    def get(fmt):
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

    def string():
        return take(get("<Q"))

    def value(t):
        if t == STR:
            return string()
        if t == ARR:
            it, n = get("<I"), get("<Q")
            return (it, [value(it) for _ in range(n)])
        return get(SCALAR[t])

    if take(4) != b"GGUF":
        raise GgufError("magic")
    version, nt, nkv = get("<I"), get("<Q"), get("<Q")
    kvs = []
    for _ in range(nkv):
        k = string().decode()
        t = get("<I")
        kvs.append((k, t, value(t)))
    align = next((v for k, t, v in kvs if k == "general.alignment"), 32)
    names = {v: k for k, v in GGML.items()}
    infos = []
    for _ in range(nt):
        name = string().decode()
        nd = get("<I")
        ne = [get("<Q") for _ in range(nd)]
        infos.append((name, names[get("<I")], tuple(reversed(ne)), get("<Q")))
    data = pos + (-pos % align)
    tensors = {}
    for name, gt, shape, off in infos:
        if off % align:
            raise GgufError(f"{name}: offset {off} not aligned")
        n = int(np.prod(shape, dtype=np.int64))
        nbytes = n * np.dtype(NUMPY[gt]).itemsize if gt in NUMPY else n // 32 * BLOCK_BYTES[gt]
        tensors[name] = (gt, shape, raw[data + off:data + off + nbytes])
    return version, kvs, tensors, align


def array_of(entry):
    """A read tensor (type, shape, raw) of a native type as a numpy array (BF16 as uint16 bits)."""
    gt, shape, raw = entry
    return np.frombuffer(raw, dtype=NUMPY[gt]).reshape(shape)
