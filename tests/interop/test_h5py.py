#!/usr/bin/python3
"""Interop with h5py both ways: files loco writes read by h5py as man 5 loco-format describes them, and
files h5py writes in the layout of man 5 loco-format (with and without creation order, big-endian, chunked,
fixed-length string attributes) read by loco with the right values."""

import json
import sys
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import interop  # noqa: E402
from interop import TempDirCase, inspect_json, tool

try:
    import h5py
    import numpy as np

    import fixtures
except ImportError as e:
    interop.missing(f"h5py or numpy is missing ({e})")

from fixtures import BF16, bf16_bits_to_f32, f32_to_bf16_bits, read_safetensors, write_loco


def loco_values(path, tmp):
    """The tensors of path as loco reads them: converted to safetensors by loco and read back by the
    strict reader of fixtures.py, so the values are compared bit for bit, not through text."""
    out = tmp / "values.safetensors"
    if out.exists():
        out.unlink()
    tool("loco-convert", path, out)
    return {name: (dt, arr) for name, (dt, arr, _) in read_safetensors(out)[2].items()}


class LocoToH5py(TempDirCase):
    """Files written by loco-convert, read with h5py."""

    def convert(self, src, name="m.h5", *opts):
        out = self.tmp / name
        tool("loco-convert", *opts, src, out)
        return out

    def fixtures(self):
        return fixtures.make(self.tmp / "fx")

    def test_values_dtypes_and_order(self):
        fx = self.fixtures()
        out = self.convert(fx / "model.safetensors")
        want = fixtures.model_tensors()
        with h5py.File(out, "r") as f:
            g = f["tensors"]
            self.assertEqual(list(g), list(want), "h5py does not see the tensors in the model's order")
            for name, v in want.items():
                ds = g[name]
                if isinstance(v, BF16):
                    self.assertEqual(ds.dtype, np.dtype("<u2"), name)
                    self.assertEqual(ds.attrs["dtype"], "bfloat16")
                    self.assertIsInstance(ds.attrs["dtype"], str)
                    np.testing.assert_array_equal(ds[()], v.bits)
                else:
                    v = np.asarray(v)
                    self.assertEqual(ds.dtype, v.dtype, name)  # float16 comes back as numpy float16, bool as bool
                    self.assertEqual(ds.shape, v.shape, name)
                    self.assertEqual(ds[()].tobytes(), v.tobytes(), name)
                    self.assertNotIn("dtype", ds.attrs, name)

    def test_root_attributes_are_python_str_and_int(self):
        fx = self.fixtures()
        out = self.convert(fx / "model.h5", "copy.h5")
        with h5py.File(out, "r") as f:
            a = f.attrs
            for k in ("loco_format", "kind", "model_config", "note", "producer", "created"):
                self.assertIsInstance(a[k], str, k)
            self.assertEqual(a["loco_format"], "loco")
            self.assertEqual(a["kind"], "model")
            self.assertEqual(a["note"], "hello")
            self.assertTrue(a["producer"].startswith("loco-convert 0.1.0"), a["producer"])
            for k, want in (("loco_version", 1), ("round", 3), ("samples", 100)):
                self.assertIsInstance(a[k], np.integer, k)
                self.assertEqual(a[k].dtype, np.int64, k)
                self.assertEqual(int(a[k]), want, k)

    def test_groups_track_creation_order(self):
        fx = self.fixtures()
        out = self.convert(fx / "model.safetensors")
        with h5py.File(out, "r") as f:
            for obj in (f["/"], f["tensors"]):
                flags = obj.id.get_create_plist().get_link_creation_order()
                self.assertEqual(flags, h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
            self.assertEqual(f["tensors/fc1.weight"].id.get_create_plist().get_layout(), h5py.h5d.CONTIGUOUS)

    def test_bf16_is_round_to_nearest_even(self):
        fx = self.fixtures()
        out = self.convert(fx / "floats.h5", "bf.h5", "--dtype", "bf16")
        v = fixtures.round_trip_f32()
        with h5py.File(out, "r") as f:
            ds = f["tensors/v"]
            self.assertEqual(ds.dtype, np.dtype("<u2"))
            self.assertEqual(ds.attrs["dtype"], "bfloat16")
            np.testing.assert_array_equal(ds[()], f32_to_bf16_bits(v))
            # half an ulp: |x - bf16(x)| <= 2^-8 |x|
            back = bf16_bits_to_f32(ds[()]).astype(np.float64)
            self.assertTrue(np.all(np.abs(back - v) <= 2.0 ** -8 * np.abs(v)))

    def test_f16_is_numpy_float16(self):
        fx = self.fixtures()
        out = self.convert(fx / "floats.h5", "h.h5", "--dtype", "f16")
        v = fixtures.round_trip_f32()
        with h5py.File(out, "r") as f:
            ds = f["tensors/v"]
            self.assertEqual(ds.dtype, np.float16)
            np.testing.assert_array_equal(ds[()].view(np.uint16), v.astype(np.float16).view(np.uint16))

    def test_state_groups_and_tensor_attributes(self):
        p = write_loco(self.tmp / "in.h5", {"w": np.ones(3, dtype=np.float32)},
                       groups={"state/exp_avg": {"w": np.full(3, 0.5, dtype=np.float32)}})
        with h5py.File(p, "a") as f:
            f["tensors/w"].attrs["origin"] = "h5py"
            f["tensors/w"].attrs["lr_scale"] = np.int64(2)
        out = self.convert(p, "s.h5")
        with h5py.File(out, "r") as f:
            np.testing.assert_array_equal(f["state/exp_avg/w"][()], np.full(3, 0.5, dtype=np.float32))
            self.assertEqual(f["tensors/w"].attrs["origin"], "h5py")
            self.assertEqual(int(f["tensors/w"].attrs["lr_scale"]), 2)

    def test_group_attributes_are_kept(self):
        fx = self.fixtures()
        out = self.convert(fx / "state.h5", "s.h5")
        with h5py.File(out, "r") as f:
            self.assertEqual(int(f["state"].attrs["step"]), 7)

    def test_stdout_is_an_hdf5_file(self):
        fx = self.fixtures()
        p = tool("loco-convert", fx / "model.safetensors", "-")
        (self.tmp / "o.h5").write_bytes(p.stdout)
        with h5py.File(self.tmp / "o.h5", "r") as f:
            self.assertEqual(f.attrs["loco_format"], "loco")
            np.testing.assert_array_equal(f["tensors/fc1.bias"][()], fixtures.model_tensors()["fc1.bias"])


class H5pyToLoco(TempDirCase):
    """Files written with h5py in the layout of man 5 loco-format, read by loco."""

    TENSORS = {"zeta": np.array([1.5, -2.25], dtype=np.float32),
               "alpha": np.arange(6, dtype=np.float64).reshape(2, 3) / 7,
               "mid.weight": np.array([[0.1, 0.2]], dtype=np.float16)}

    def listed(self, path):
        return [t["name"] for t in inspect_json(path)["tensors"]]

    def assert_values(self, path, want):
        got = loco_values(path, self.tmp)
        for name, v in want.items():
            dt, arr = got[name]
            if isinstance(v, BF16):
                self.assertEqual(dt, "BF16", name)
                np.testing.assert_array_equal(arr, v.bits)
            else:
                v = np.asarray(v)
                self.assertEqual(arr.dtype, v.dtype.newbyteorder("<") if v.dtype.byteorder == ">" else v.dtype, name)
                np.testing.assert_array_equal(arr, v, name)

    def test_creation_order_is_kept(self):
        p = write_loco(self.tmp / "o.h5", self.TENSORS, track_order=True)
        self.assertEqual(self.listed(p), ["zeta", "alpha", "mid.weight"])
        self.assert_values(p, self.TENSORS)

    def test_without_creation_order_names_are_sorted(self):
        p = write_loco(self.tmp / "n.h5", self.TENSORS, track_order=False)
        with h5py.File(p, "r") as f:
            self.assertEqual(f["tensors"].id.get_create_plist().get_link_creation_order(), 0)
        self.assertEqual(self.listed(p), ["alpha", "mid.weight", "zeta"])
        self.assert_values(p, self.TENSORS)

    def test_big_endian_datasets(self):
        be = {"f32": np.array([1.5, -2.25, 3e38, 1e-40], dtype=">f4"),
              "f64": (np.arange(6, dtype=">f8").reshape(3, 2) / 3),
              "f16": np.array([0.5, -65504, 6e-8], dtype=">f2"),
              "i32": np.array([-7, 2**31 - 1], dtype=">i4"),
              "u16": np.array([1, 65535], dtype=">u2")}
        p = write_loco(self.tmp / "be.h5", be)
        with h5py.File(p, "r") as f:
            self.assertEqual(f["tensors/f32"].dtype.byteorder, ">")
        j = {t["name"]: t["dtype"] for t in inspect_json(p)["tensors"]}
        self.assertEqual(j, {"f32": "float32", "f64": "float64", "f16": "float16", "i32": "int32", "u16": "uint16"})
        self.assert_values(p, be)
        le = write_loco(self.tmp / "le.h5", {k: v.astype(v.dtype.newbyteorder("<")) for k, v in be.items()})
        self.assertEqual(tool("loco-inspect", "--diff", p, le).returncode, 0)
        st = inspect_json("--stats", p)["tensors"][0]["stats"]
        self.assertEqual((st["min"], st["max"]), (float(np.float32(-2.25)), float(np.float32(3e38))))

    def test_bf16_marker_and_plain_uint16(self):
        t = {"b": BF16.from_f32(np.array([1.0, -3.5, 1e30], dtype=np.float32)), "u": np.array([1, 2], dtype=np.uint16)}
        p = write_loco(self.tmp / "b.h5", t)
        j = {x["name"]: x for x in inspect_json("--stats", p)["tensors"]}
        self.assertEqual(j["b"]["dtype"], "bfloat16")
        self.assertEqual(j["u"]["dtype"], "uint16")
        self.assertNotIn("attributes", j["b"])  # the marker is the dtype, not an attribute
        self.assertEqual(j["b"]["stats"]["min"], -3.5)
        self.assertEqual(j["b"]["stats"]["max"], float(bf16_bits_to_f32(f32_to_bf16_bits(np.float32([1e30])))[0]))
        self.assert_values(p, t)

    def test_fixed_length_and_other_attribute_types(self):
        p = self.tmp / "a.h5"
        with h5py.File(p, "w") as f:
            f.attrs["loco_format"] = np.bytes_("loco")  # fixed-length ASCII, as older writers make
            f.attrs["loco_version"] = np.int32(1)
            f.attrs["kind"] = np.bytes_("delta")
            f.attrs["samples"] = np.uint16(12)
            f.attrs["lr"] = 0.25
            f.attrs["shape"] = np.array([3, 4], dtype=np.int64)
            f.create_dataset("tensors/w", data=np.ones(2, dtype=np.float32))
        j = inspect_json(p)
        self.assertEqual(j["kind"], "delta")
        a = j["attributes"]
        self.assertEqual((a["loco_format"], a["loco_version"], a["samples"], a["lr"], a["shape"]),
                         ("loco", 1, 12, 0.25, [3, 4]))

    def test_chunked_compressed_scalar_and_empty(self):
        t = {"c": np.sin(np.arange(5000, dtype=np.float32)), "s": np.float64(-0.75), "e": np.zeros((3, 0), np.float32)}
        p = write_loco(self.tmp / "c.h5", t, dataset_opts={"tensors/c": {"chunks": (1000,), "compression": "gzip",
                                                                         "shuffle": True}})
        j = {x["name"]: x for x in inspect_json(p)["tensors"]}
        self.assertEqual((j["s"]["shape"], j["e"]["shape"], j["c"]["shape"]), ([], [3, 0], [5000]))
        self.assert_values(p, t)

    def test_h5py_bool_and_integers(self):
        t = {"m": np.array([[True, False], [False, True]]), "i8": np.array([-128, 127], dtype=np.int8),
             "u64": np.array([0, 2**64 - 1], dtype=np.uint64)}
        p = write_loco(self.tmp / "i.h5", t)
        self.assertEqual([x["dtype"] for x in inspect_json(p)["tensors"]], ["bool", "int8", "uint64"])
        self.assert_values(p, t)

    def test_soft_and_external_links_are_ignored(self):
        p = write_loco(self.tmp / "l.h5", {"w": np.ones(2, dtype=np.float32)})
        with h5py.File(p, "a") as f:
            f["tensors/alias"] = h5py.SoftLink("/tensors/w")
            f["tensors/outside"] = h5py.ExternalLink("/etc/passwd", "/x")
            f["tensors/hard"] = f["tensors/w"]  # a second hard link is an ordinary dataset
        r = tool("loco-inspect", "--json", p)
        self.assertEqual([t["name"] for t in json.loads(r.stdout)["tensors"]], ["w", "hard"])
        err = r.stderr.decode()
        self.assertIn("ignoring link 'alias'", err)
        self.assertIn("ignoring link 'outside'", err)

    def test_state_and_data_groups(self):
        p = write_loco(self.tmp / "d.h5", {}, kind="data",
                       groups={"data": {"x": np.eye(3, dtype=np.uint8), "y": np.array([2, 0, 1], dtype=np.int32)}},
                       group_attrs={"data": {"scale": 0.5}})
        j = inspect_json(p)
        self.assertEqual([(t["group"], t["name"]) for t in j["tensors"]], [("data", "x"), ("data", "y")])
        self.assertEqual(j["group_attributes"]["data"]["scale"], 0.5)
        copy = self.tmp / "copy.h5"
        tool("loco-convert", p, copy)
        with h5py.File(copy, "r") as f:
            np.testing.assert_array_equal(f["data/x"][()], np.eye(3, dtype=np.uint8))
            self.assertEqual(f.attrs["kind"], "data")


if __name__ == "__main__":
    interop.main()
