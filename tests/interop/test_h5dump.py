#!/usr/bin/python3
"""Interop with the HDF5 command-line tools: files loco writes, read by h5dump and h5ls, show the
layout of man 5 loco-format (types, shapes, attributes, creation order) and the right values."""

import re
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import interop  # noqa: E402
from interop import TempDirCase, tool

try:
    import numpy as np

    import fixtures
except ImportError as e:
    interop.missing(f"numpy is missing ({e})")


def h5dump(*args) -> str:
    p = subprocess.run(["h5dump", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"h5dump {' '.join(map(str, args))}: exit {p.returncode}: {p.stderr.decode()}")
    return p.stdout.decode()


def dumped_values(path, dataset, fmt="%.17g"):
    """A dataset's values as h5dump prints them (-m sets the float format), as floats."""
    text = h5dump("-d", dataset, "-m", fmt, "-y", "-w", "0", path)
    body = re.search(r"DATA \{([^}]*)\}", text).group(1)  # the first DATA block: the dataset, not its attributes
    return [float(x) for x in re.findall(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|inf|nan)", body)]


class LocoToH5dump(TempDirCase):
    def setUp(self):
        super().setUp()
        self.fx = fixtures.make(self.tmp / "fx")
        self.h5 = self.tmp / "m.h5"
        tool("loco-convert", self.fx / "model.safetensors", self.h5)

    def test_header_types_shapes_attributes(self):
        text = h5dump("-H", "-A", self.h5)
        for pattern in (
            r'ATTRIBUTE "loco_format" \{\s*DATATYPE\s+H5T_STRING \{[^}]*CSET H5T_CSET_UTF8;[^}]*\}\s*DATASPACE\s+SCALAR',
            r'ATTRIBUTE "loco_version" \{\s*DATATYPE\s+H5T_STD_I64LE\s*DATASPACE\s+SCALAR',
            r'DATASET "fc1\.weight" \{\s*DATATYPE\s+H5T_IEEE_F32LE\s*DATASPACE\s+SIMPLE \{ \( 4, 3 \) / \( 4, 3 \) \}',
            r'DATASET "w64" \{\s*DATATYPE\s+H5T_IEEE_F64LE',
            r'DATASET "scale" \{\s*DATATYPE\s+H5T_IEEE_F32LE\s*DATASPACE\s+SCALAR',
            r'DATASET "ids" \{\s*DATATYPE\s+H5T_STD_I32LE',
            r'DATASET "counts" \{\s*DATATYPE\s+H5T_STD_I64LE',
            r'DATASET "bytes" \{\s*DATATYPE\s+H5T_STD_U8LE',
            r'DATASET "mask" \{\s*DATATYPE\s+H5T_ENUM \{\s*H5T_STD_I8LE;\s*"FALSE"\s+0;\s*"TRUE"\s+1;',
            r'DATASET "empty" \{\s*DATATYPE\s+H5T_IEEE_F32LE\s*DATASPACE\s+SIMPLE \{ \( 0, 3 \) / \( 0, 3 \) \}',
            r'DATASET "head\.weight" \{\s*DATATYPE\s+H5T_STD_U16LE\s*DATASPACE\s+SIMPLE \{ \( 2, 4 \) / \( 2, 4 \) \}'
            r'\s*ATTRIBUTE "dtype" \{',
            r'DATASET "emb\.weight" \{\s*DATATYPE\s+16-bit little-endian floating-point',
        ):
            self.assertRegex(text, pattern)

    def test_attribute_values(self):
        text = h5dump("-a", "/loco_format", "-a", "/kind", "-a", "/loco_version", "-a", "/tensors/head.weight/dtype",
                      self.h5)
        for pattern in (r'ATTRIBUTE "loco_format".*?\(0\): "loco"', r'ATTRIBUTE "kind".*?\(0\): "model"',
                        r'ATTRIBUTE "loco_version".*?\(0\): 1\b', r'ATTRIBUTE "dtype".*?\(0\): "bfloat16"'):
            self.assertRegex(text, re.compile(pattern, re.S))

    def test_creation_order(self):
        text = h5dump("-H", "--sort_by=creation_order", "-g", "/tensors", self.h5)
        order = re.findall(r'DATASET "([^"]+)"', text)
        self.assertEqual(order, list(fixtures.model_tensors()))

    def test_values(self):
        t = fixtures.model_tensors()
        for name, want in (("fc1.weight", t["fc1.weight"]), ("w64", t["w64"]), ("emb.weight", t["emb.weight"]),
                           ("ids", t["ids"]), ("counts", t["counts"])):
            got = np.array(dumped_values(self.h5, f"/tensors/{name}"))
            np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float64).ravel(), name)
        bits = np.array(dumped_values(self.h5, "/tensors/head.weight"), dtype=np.uint16)
        np.testing.assert_array_equal(bits, t["head.weight"].bits.ravel())

    def test_h5ls_lists_groups(self):
        p = subprocess.run(["h5ls", "-r", str(self.h5)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertRegex(p.stdout.decode(), r"(?m)^/tensors/fc1\.weight\s+Dataset \{4, 3\}$")

    def test_stdout_file_and_state_groups(self):
        p = tool("loco-convert", self.fx / "state.h5", "-")
        out = self.tmp / "s.h5"
        out.write_bytes(p.stdout)
        text = h5dump("-H", out)
        self.assertRegex(text, r'(?s)GROUP "state" \{\s*ATTRIBUTE "step".*?GROUP "exp_avg" \{\s*DATASET "w"')
        self.assertEqual(dumped_values(out, "/state/exp_avg/w"), [0.5, 0.5, 0.5])


if __name__ == "__main__":
    interop.main(requirements=[lambda: interop.need_program("h5dump"), lambda: interop.need_program("h5ls")])
