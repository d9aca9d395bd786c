#!/usr/bin/python3
"""Interop with safetensors and with other programs' checksums: the safetensors files loco writes
are read by a minimal reader written here from the format's specification (struct + json + numpy),
and loco's tensor checksums are recomputed with a Python XXH64, so a program without loco (a
PyTorch trainer, say) can write files loco reads and compute the checksums deltas record."""

import json
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import interop  # noqa: E402
from interop import TempDirCase, inspect_json, tool

try:
    import numpy as np

    import fixtures
    from fixtures import BF16, read_safetensors
except ImportError as e:
    interop.missing(f"numpy is missing ({e})")

# The reference implementation's dtype order (its enum), which orders its writer's data: entries by
# descending dtype, then by name. Only the dtypes loco writes.
REFERENCE_ORDER = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]


class LocoWritesSafetensors(TempDirCase):
    def convert(self, src, *opts, name="m.safetensors"):
        out = self.tmp / name
        tool("loco-convert", *opts, src, out)
        return out

    def test_values_dtypes_shapes(self):
        fx = fixtures.make(self.tmp / "fx")
        _, meta, got = read_safetensors(self.convert(fx / "model.h5"))
        want = fixtures.model_tensors()
        self.assertEqual(set(got), set(want))
        for name, v in want.items():
            dt, arr, _ = got[name]
            if isinstance(v, BF16):
                self.assertEqual(dt, "BF16")
                np.testing.assert_array_equal(arr, v.bits)
            else:
                v = np.asarray(v)
                self.assertEqual(dt, fixtures.ST_DTYPES[v.dtype], name)
                self.assertEqual(arr.shape, v.shape, name)
                self.assertEqual(arr.tobytes(), v.tobytes(), name)

    def test_header_layout(self):
        fx = fixtures.make(self.tmp / "fx")
        out = self.convert(fx / "model.h5")
        raw = out.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header, meta, got = read_safetensors(out)
        self.assertEqual((8 + n) % 8, 0, "the data buffer does not start at a multiple of 8")
        compact = header.rstrip(" ")
        self.assertTrue(compact.endswith("}") and len(header) - len(compact) < 8, "padding is not 0-7 spaces")
        self.assertEqual(compact, json.dumps(json.loads(compact), separators=(",", ":"), ensure_ascii=False),
                         "the header is not compact JSON in its own key order")
        self.assertEqual(list(json.loads(compact))[0], "__metadata__")
        self.assertEqual(list(meta), sorted(meta), "__metadata__ keys are not sorted")
        by_offset = [name for name, _ in sorted(got.items(), key=lambda kv: kv[1][2])]
        expected = sorted(got, key=lambda k: (-REFERENCE_ORDER.index(got[k][0]), k))
        self.assertEqual(by_offset, expected, "data is not laid out in the reference writer's order")

    def test_metadata(self):
        fx = fixtures.make(self.tmp / "fx")
        _, meta, _ = read_safetensors(self.convert(fx / "model.h5"))
        self.assertEqual(meta["format"], "pt")
        self.assertEqual(json.loads(meta["model_config"]), {"type": "mlp", "hidden": [4]})
        self.assertEqual((meta["round"], meta["note"]), ("3", "hello"))

    def test_names_that_need_escaping(self):
        names = ['naïve.weight', 'q"uote', 'back\\slash', 'tab\tname', 'ctl\x01', '日本.bias']
        t = {n: np.full(2, i, dtype=np.float32) for i, n in enumerate(names)}
        src = fixtures.write_loco(self.tmp / "names.h5", t)
        _, _, got = read_safetensors(self.convert(src))
        self.assertEqual(set(got), set(names))
        for i, n in enumerate(names):
            np.testing.assert_array_equal(got[n][1], np.full(2, i, dtype=np.float32))
        # and back: loco reads its own escapes
        back = self.tmp / "back.h5"
        tool("loco-convert", self.tmp / "m.safetensors", back)
        self.assertEqual(tool("loco-inspect", "--diff", src, back).returncode, 0)

    def test_only_empty_tensors(self):
        src = fixtures.write_loco(self.tmp / "e.h5", {"e": np.zeros((0, 4), np.float32), "f": np.zeros(0, np.float16)})
        out = self.convert(src)
        _, _, got = read_safetensors(out)
        self.assertEqual({k: (v[0], v[1].shape, v[2]) for k, v in got.items()},
                         {"e": ("F32", (0, 4), (0, 0)), "f": ("F16", (0,), (0, 0))})

    def test_dtype_option(self):
        fx = fixtures.make(self.tmp / "fx")
        _, _, got = read_safetensors(self.convert(fx / "floats.h5", "--dtype", "bf16"))
        self.assertEqual(got["v"][0], "BF16")
        np.testing.assert_array_equal(got["v"][1], fixtures.f32_to_bf16_bits(fixtures.round_trip_f32()))

    def test_stdout_is_loco_hdf5(self):
        fx = fixtures.make(self.tmp / "fx")
        p = tool("loco-convert", fx / "model.safetensors", "-")
        self.assertEqual(p.stdout[:8], b"\x89HDF\r\n\x1a\n")


class LocoReadsSafetensors(TempDirCase):
    def test_hand_written_file_with_padding_and_no_metadata(self):
        t = {"b": np.array([3, 4], dtype=np.int16), "a": np.arange(6, dtype=np.float64).reshape(3, 2)}
        p = self.tmp / "h.safetensors"
        p.write_bytes(fixtures.safetensors_bytes(t, None, pad_to=1))  # no padding at all: still valid
        j = inspect_json(p)
        self.assertEqual([x["name"] for x in j["tensors"]], ["b", "a"])  # data order
        self.assertEqual(j["attributes"], {})
        self.assertEqual([x["dtype"] for x in j["tensors"]], ["int16", "float64"])
        st = inspect_json("--stats", p)["tensors"][1]["stats"]
        self.assertEqual((st["min"], st["max"], st["mean"]), (0.0, 5.0, 2.5))

    def test_metadata_null_is_no_metadata(self):
        p = self.tmp / "n.safetensors"
        p.write_bytes(fixtures.raw_safetensors('{"__metadata__":null,"a":{"dtype":"U8","shape":[1],'
                                               '"data_offsets":[0,1]}}', b"\x07"))
        j = inspect_json(p)
        self.assertEqual((j["attributes"], j["tensors"][0]["dtype"]), ({}, "uint8"))


# ------------------------------------------------------------------------------------------------
# XXH64 (Yann Collet's xxHash, 64-bit) from its specification, for loco's checksums.

M64 = (1 << 64) - 1
P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63,
                      0x27D4EB2F165667C5)


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def _round(acc, lane):
    return (_rotl((acc + lane * P2) & M64, 31) * P1) & M64


def xxh64(data: bytes, seed: int = 0) -> int:
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M64, (seed + P2) & M64, seed, (seed - P1) & M64]
        while i + 32 <= n:
            for k in range(4):
                v[k] = _round(v[k], int.from_bytes(data[i + 8 * k:i + 8 * k + 8], "little"))
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & M64
        for k in range(4):
            h = ((h ^ _round(0, v[k])) * P1 + P4) & M64
    else:
        h = (seed + P5) & M64
    h = (h + n) & M64
    while i + 8 <= n:
        h = (_rotl(h ^ _round(0, int.from_bytes(data[i:i + 8], "little")), 27) * P1 + P4) & M64
        i += 8
    if i + 4 <= n:
        h = (_rotl(h ^ (int.from_bytes(data[i:i + 4], "little") * P1 & M64), 23) * P2 + P3) & M64
        i += 4
    while i < n:
        h = (_rotl(h ^ (data[i] * P5 & M64), 11) * P1) & M64
        i += 1
    h ^= h >> 33
    h = h * P2 & M64
    h ^= h >> 29
    h = h * P3 & M64
    return h ^ (h >> 32)


LOCO_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I8": "int8", "I16": "int16",
              "I32": "int32", "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64",
              "BOOL": "bool"}


def tensor_checksum(dtype_name: str, shape, le_bytes: bytes) -> int:
    """XXH64 of: dtype name, a NUL, rank and dimensions as little-endian u64, the little-endian data."""
    head = dtype_name.encode() + b"\0" + struct.pack(f"<{1 + len(shape)}Q", len(shape), *shape)
    return xxh64(head + le_bytes)


def set_checksum(items: dict) -> int:
    """XXH64 over (name, NUL, checksum as u64 LE), names in byte order."""
    return xxh64(b"".join(n.encode() + b"\0" + struct.pack("<Q", c)
                          for n, c in sorted(items.items(), key=lambda kv: kv[0].encode())))


class Checksums(TempDirCase):
    def test_xxh64_known_values(self):
        self.assertEqual(xxh64(b""), 0xEF46DB3751D8E999)  # published test vectors
        self.assertEqual(xxh64(b"a"), 0xD24EC4F1A98C6E5B)
        self.assertEqual(xxh64(b"abc"), 0x44BC2CF5AD770999)

    def test_tensor_and_set_checksums_match_python(self):
        fx = fixtures.make(self.tmp / "fx")
        for i, src in enumerate((fx / "model.h5", fx / "model.safetensors", fx / "floats.h5")):
            j = inspect_json("--checksum", src)
            st = src if src.suffix == ".safetensors" else self.tmp / f"c{i}.safetensors"
            if st != src:
                tool("loco-convert", src, st)
            _, _, got = read_safetensors(st)
            ours = {}
            for name, (dt, arr, _) in got.items():
                ours[name] = tensor_checksum(LOCO_DTYPE[dt], arr.shape, arr.tobytes())
            for t in j["tensors"]:
                self.assertEqual(t["checksum"], f"xxh64:{ours[t['name']]:016x}", f"{src}: {t['name']}")
            self.assertEqual(j["tensors_checksum"], f"xxh64:{set_checksum(ours):016x}", str(src))


if __name__ == "__main__":
    interop.main()
