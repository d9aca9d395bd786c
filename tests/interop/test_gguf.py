#!/usr/bin/python3
"""Interop with llama.cpp's GGUF: files written by a writer made from the specification
(tests/cli/gguf_spec.py; no Debian or npm package writes GGUF) are read by loco with every type it
supports, quantized blocks dequantized to hand-computed values; loco's GGUF files are read back by
the spec reader; h5 -> gguf -> h5 is bit-identical; f16/bf16 rounding is numpy's and PyTorch's;
key/values survive gguf -> h5 -> gguf with their types; inspect, merge and aggregate take GGUF."""

import json
import math
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import interop  # noqa: E402
from interop import TempDirCase, inspect_json, tool

try:
    import h5py
    import numpy as np

    import fixtures
    import gguf_spec as g
except ImportError as e:
    interop.missing(f"numpy or h5py is missing ({e})")


def h5_tensors(path):
    with h5py.File(path, "r") as f:
        return {n: f["tensors"][n][()] for n in f["tensors"]}


def h5_attrs(path):
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


# Metadata of every value type, arrays of each and an array of arrays, a string that is not UTF-8,
# floats that need care (0.1f, -0.0, inf, nan) and the largest u64.
KVS = [
    ("general.architecture", g.STR, "llama"),
    ("general.alignment", g.U32, 64),
    ("general.file_type", g.U32, 1),
    ("t.u8", g.U8, 255), ("t.i8", g.I8, -128), ("t.u16", g.U16, 65535), ("t.i16", g.I16, -32768),
    ("t.u32", g.U32, 4294967295), ("t.i32", g.I32, -2147483648), ("t.u64", g.U64, 2**64 - 1),
    ("t.i64", g.I64, -2**63), ("t.f32", g.F32, 0.1), ("t.f32neg0", g.F32, -0.0), ("t.f32inf", g.F32, math.inf),
    ("t.f64", g.F64, 1e-300), ("t.f64nan", g.F64, math.nan), ("t.bool", g.BOOL, 1), ("t.false", g.BOOL, 0),
    ("t.bytes", g.STR, b"\xff\xfeok"), ("t.utf8", g.STR, "na\u00efve \"q\" \\ \n"),
    ("tokenizer.ggml.tokens", g.ARR, (g.STR, ["<s>", "</s>", "\u2581the"])),
    ("tokenizer.ggml.scores", g.ARR, (g.F32, [0.0, -1.5, 3.25])),
    ("t.bools", g.ARR, (g.BOOL, [1, 0])), ("t.empty", g.ARR, (g.I32, [])),
    ("t.nested", g.ARR, (g.ARR, [(g.U8, [1, 2]), (g.STR, ["x"])])),
]


def same_value(t, a, b):
    if t == g.ARR:
        return a[0] == b[0] and len(a[1]) == len(b[1]) and all(same_value(a[0], x, y) for x, y in zip(a[1], b[1]))
    if t in (g.F32, g.F64):
        return struct.pack(g.SCALAR[t], a) == struct.pack(g.SCALAR[t], b)  # bit for bit (nan, -0.0)
    if t == g.STR:
        return (a.encode() if isinstance(a, str) else a) == (b.encode() if isinstance(b, str) else b)
    return a == b


class ReadsGguf(TempDirCase):
    def write(self, name, tensors, kvs=(), **kw):
        p = self.tmp / name
        p.write_bytes(g.gguf_bytes(tensors, kvs, **kw))
        return p

    def test_native_types_and_shapes(self):
        a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5
        arrays = {"f32": a, "f16": a.astype(np.float16), "f64": a.astype(np.float64) / 3,
                  "i8": np.array([-128, 0, 127], np.int8), "i16": np.array([[-3, 4]], np.int16),
                  "i32": np.array([2**31 - 1], np.int32), "i64": np.array([-2**63, 5], np.int64),
                  "scalar": np.array(2.5, np.float32), "empty": np.zeros((0, 3), np.float32)}
        bf16 = np.array([[0x3F80, 0xC040], [0x7F80, 0x0001]], np.uint16)  # 1, -3, inf, a subnormal
        ts = [g.Tensor.of(n, v) for n, v in arrays.items()] + [g.Tensor("bf16", "BF16", bf16.shape, bf16.tobytes())]
        for version in (2, 3):
            src = self.write(f"v{version}.gguf", ts, [("general.alignment", g.U32, 64)], version=version, alignment=64)
            j = inspect_json(src)
            self.assertEqual(j["format"], "gguf")
            shapes = {t["name"]: t["shape"] for t in j["tensors"]}
            self.assertEqual(shapes["f32"], [2, 3, 4])  # ne = [4, 3, 2] reversed
            self.assertEqual(shapes["scalar"], [])
            out = self.tmp / f"v{version}.h5"
            tool("loco-convert", src, out)
            got = h5_tensors(out)
            for n, v in arrays.items():
                self.assertEqual(got[n].dtype, v.dtype, n)
                self.assertEqual(got[n].shape, v.shape, n)
                self.assertEqual(got[n].tobytes(), v.tobytes(), n)
            self.assertEqual(got["bf16"].view(np.uint16).tobytes(), bf16.tobytes())
            self.assertEqual(h5_attrs(out)["source_format"], "gguf")

    def test_quantized_blocks_hand_computed(self):
        # Q8_0: d = 0.5, q = -16..15 -> x = q / 2. Q4_0: d = 0.25, nibbles 0..15 then 15..0 ->
        # x = (q - 8) / 4. Q4_1: d = 2, m = -1, nibbles j % 16 -> x = 2 q - 1. Two rows of 32, the
        # second block of each with other scales, so blocks are told apart.
        q8 = np.arange(-16, 16)
        q4 = np.concatenate([np.arange(16), np.arange(15, -1, -1)])
        q41 = np.arange(32) % 16
        t8 = g.Tensor("q8", "Q8_0", (2, 32), g.q8_0(0.5, q8) + g.q8_0(-4.0, q8))
        t40 = g.Tensor("q40", "Q4_0", (2, 32), g.q4_0(0.25, q4) + g.q4_0(1.0, q4))
        t41 = g.Tensor("q41", "Q4_1", (1, 64), g.q4_1(2.0, -1.0, q41) + g.q4_1(0.5, 8.0, q41))
        src = self.write("q.gguf", [t8, t40, t41], [("general.quantization_version", g.U32, 2)])
        out = self.tmp / "q.h5"
        tool("loco-convert", src, out)
        got = h5_tensors(out)
        want8 = np.stack([q8 * 0.5, q8 * -4.0]).astype(np.float32)
        want40 = np.stack([(q4 - 8) * 0.25, (q4 - 8) * 1.0]).astype(np.float32)
        want41 = np.concatenate([q41 * 2.0 - 1.0, q41 * 0.5 + 8.0]).reshape(1, 64).astype(np.float32)
        for n, w in (("q8", want8), ("q40", want40), ("q41", want41)):
            self.assertEqual(got[n].dtype, np.float32, n)
            np.testing.assert_array_equal(got[n], w, n)
        # Row blocks of a rank-1 quantized tensor start inside a block: the stream still agrees.
        flat = self.write("flat.gguf", [g.Tensor("v", "Q4_0", (64,), g.q4_0(0.25, q4) + g.q4_0(1.0, q4))])
        tool("loco-convert", flat, self.tmp / "flat.h5")
        np.testing.assert_array_equal(h5_tensors(self.tmp / "flat.h5")["v"], want40.reshape(64))

    def test_unsupported_type_is_refused(self):
        src = self.write("k.gguf", [g.Tensor("blk.0.ffn.weight", "Q4_K", (256,), b"\0" * 144)])
        p = tool("loco-convert", src, self.tmp / "k.h5", check=False)
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn("tensor 'blk.0.ffn.weight' has ggml type Q4_K, which loco does not read", p.stderr.decode())
        self.assertFalse((self.tmp / "k.h5").exists())

    def test_metadata_kept_and_written_back(self):
        w = g.Tensor.of("w", np.arange(6, dtype=np.float16).reshape(2, 3))
        src = self.write("m.gguf", [w], KVS, alignment=64)
        h5 = self.tmp / "m.h5"
        tool("loco-convert", src, h5)
        meta = json.loads(h5_attrs(h5)["gguf_metadata"])
        self.assertEqual([e["key"] for e in meta], [k for k, _, _ in KVS])
        by_key = {e["key"]: e for e in meta}
        self.assertEqual(by_key["t.u64"], {"key": "t.u64", "type": "u64", "value": 2**64 - 1})
        self.assertEqual(by_key["t.f32"]["value"], 0.1)  # the shortest text of 0.1f
        self.assertEqual(by_key["t.f64nan"]["value"], "nan")
        self.assertEqual(by_key["t.bytes"]["value"], {"hex": "fffe6f6b"})
        self.assertEqual(by_key["tokenizer.ggml.tokens"], {"key": "tokenizer.ggml.tokens", "type": "arr", "items": "str",
                                                           "value": ["<s>", "</s>", "\u2581the"]})
        self.assertEqual(by_key["t.nested"]["value"], [{"items": "u8", "value": [1, 2]}, {"items": "str", "value": ["x"]}])
        back = self.tmp / "back.gguf"
        tool("loco-convert", h5, back)
        version, kvs, tensors, align = g.read_gguf(back)
        self.assertEqual((version, align), (3, 64))
        self.assertEqual([(k, t) for k, t, _ in kvs], [(k, t) for k, t, _ in KVS])
        for (k, t, v), (_, _, v2) in zip(KVS, kvs):
            self.assertTrue(same_value(t, v, v2), f"{k}: {v!r} came back as {v2!r}")
        np.testing.assert_array_equal(g.array_of(tensors["w"]), np.arange(6, dtype=np.float16).reshape(2, 3))
        # Straight gguf -> gguf gives the same bytes as the spec writer's (same layout, same order).
        tool("loco-convert", src, self.tmp / "direct.gguf")
        self.assertEqual((self.tmp / "direct.gguf").read_bytes(), src.read_bytes())

    def test_dequantized_file_type_is_updated(self):
        t = g.Tensor("q", "Q8_0", (32,), g.q8_0(1.0, np.arange(32)))
        src = self.write("q.gguf", [t], [("general.file_type", g.U32, 7)])  # MOSTLY_Q8_0
        for dtype, ftype in (("f32", 0), ("f16", 1), ("bf16", 32)):
            out = self.tmp / f"{dtype}.gguf"
            tool("loco-convert", "--dtype", dtype, src, out)
            _, kvs, tensors, _ = g.read_gguf(out)
            self.assertEqual(kvs, [("general.file_type", g.U32, ftype)])
            self.assertEqual(tensors["q"][0], dtype.upper())

    def test_big_endian_refused(self):
        src = self.tmp / "be.gguf"
        src.write_bytes(b"GGUF" + struct.pack(">IQQ", 3, 0, 0))
        p = tool("loco-inspect", src, check=False)
        self.assertEqual(p.returncode, 4)
        self.assertIn("big-endian", p.stderr.decode())


class WritesGguf(TempDirCase):
    def test_h5_round_trip_bit_identical(self):
        rng = np.random.default_rng(1)
        t = {"w": rng.standard_normal((5, 7)).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32),
             "s": np.array(3.5, np.float32), "n": np.array([1, -2], np.int64)}
        src = fixtures.write_loco(self.tmp / "m.h5", t, {"model_config": '{"type": "mlp"}', "round": np.int64(3),
                                                         "lr": 0.25, "dims": np.array([1, 2], np.int64)})
        gg = self.tmp / "m.gguf"
        tool("loco-convert", src, gg)
        version, kvs, tensors, align = g.read_gguf(gg)
        self.assertEqual(align, 32)
        self.assertEqual(dict((k, (tp, v)) for k, tp, v in kvs),
                         {"loco.model_config": (g.STR, b'{"type": "mlp"}'), "loco.round": (g.I64, 3),
                          "loco.lr": (g.F64, 0.25), "loco.dims": (g.ARR, (g.I64, [1, 2]))})
        self.assertEqual(tensors["w"][:2], ("F32", (5, 7)))
        back = self.tmp / "back.h5"
        tool("loco-convert", gg, back)
        got = h5_tensors(back)
        for n, v in t.items():
            self.assertEqual(got[n].tobytes(), v.tobytes(), n)
        a = h5_attrs(back)
        self.assertEqual((a["round"], a["lr"], json.loads(a["model_config"])), (3, 0.25, {"type": "mlp"}))
        self.assertEqual(inspect_json("--checksum", src)["tensors_checksum"],
                         inspect_json("--checksum", back)["tensors_checksum"])
        self.assertNotIn("gguf_metadata", a)

    def test_f16_bf16_rounding_matches_numpy_and_torch(self):
        torch = interop.need_module("torch")
        rng = np.random.default_rng(2)
        x = np.concatenate([rng.standard_normal(1000) * 10, [65519.0, 65520.0, 1e-8, -0.0, 2**-24 * 1.5]])
        x = x.astype(np.float32)
        src = fixtures.write_loco(self.tmp / "x.h5", {"x": x})
        for dtype, gt in (("f16", "F16"), ("bf16", "BF16")):
            out = self.tmp / f"x-{dtype}.gguf"
            tool("loco-convert", "--dtype", dtype, src, out)
            _, _, tensors, _ = g.read_gguf(out)
            self.assertEqual(tensors["x"][0], gt)
            got = g.array_of(tensors["x"])
            if dtype == "f16":
                with np.errstate(over="ignore"):  # 65520 rounds to inf, as intended
                    want = x.astype(np.float16)
            else:
                want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
            self.assertEqual(got.tobytes(), want.tobytes(), dtype)

    def test_refusals(self):
        src = fixtures.write_loco(self.tmp / "u.h5", {"u": np.array([1, 2], np.uint8)})
        p = tool("loco-convert", src, self.tmp / "u.gguf", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("tensor u is uint8, which GGUF has no type for", p.stderr.decode())
        long = fixtures.write_loco(self.tmp / "l.h5", {"x" * 64: np.ones(2, np.float32)})
        p = tool("loco-convert", long, self.tmp / "l.gguf", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("GGUF readers (ggml) take names of at most 63", p.stderr.decode())
        self.assertEqual(sorted(q.name for q in self.tmp.iterdir() if q.suffix == ".gguf"), [])


class ToolsTakeGguf(TempDirCase):
    def test_inspect_merge_aggregate(self):
        a = {"w": np.array([[1, -2], [3, 0.5]], np.float32)}
        c = {"w": np.array([[-3, 1], [1, 0.5]], np.float32)}
        ga, gc = self.tmp / "a.gguf", self.tmp / "c.gguf"
        ga.write_bytes(g.gguf_bytes([g.Tensor.of("w", a["w"])]))
        gc.write_bytes(g.gguf_bytes([g.Tensor.of("w", c["w"])]))
        j = inspect_json("--stats", ga)
        self.assertEqual((j["format"], j["kind"]), ("gguf", "model"))
        m = self.tmp / "m.gguf"
        tool("loco-merge", "--method", "linear", "-o", m, ga, gc)
        _, _, tensors, _ = g.read_gguf(m)
        np.testing.assert_array_equal(g.array_of(tensors["w"]), [[-1, -0.5], [2, 0.5]])
        # A DiLoCo step whose model and deltas are GGUF equals the same step on loco files.
        model = fixtures.write_loco(self.tmp / "g0.h5", a, {"model_config": '{"type": "mlp"}', "round": np.int64(0)})
        base = inspect_json("--checksum", model)["tensors_checksum"]
        deltas = []
        for k, v in enumerate((c, a)):
            d = fixtures.write_loco(self.tmp / f"d{k}.h5", v, {"model_config": '{"type": "mlp"}', "round": np.int64(0),
                                                              "worker": np.int64(k), "base_checksum": base,
                                                              "samples": np.int64(10)}, kind="delta")
            tool("loco-convert", d, self.tmp / f"d{k}.gguf")
            deltas.append(d)
        tool("loco-convert", model, self.tmp / "g0.gguf")
        tool("loco-aggregate", "--model", model, "-o", self.tmp / "g1.h5", *deltas)
        tool("loco-aggregate", "--model", self.tmp / "g0.gguf", "-o", self.tmp / "g1-gguf.h5",
             self.tmp / "d0.gguf", self.tmp / "d1.gguf")
        self.assertEqual(h5_tensors(self.tmp / "g1.h5")["w"].tobytes(), h5_tensors(self.tmp / "g1-gguf.h5")["w"].tobytes())


if __name__ == "__main__":
    interop.main()
