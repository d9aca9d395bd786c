"""Shared plumbing of the interop tests: where the tools are, running them, scratch folders, and a
unittest main. Nothing is skipped: when a program or module the tests need is missing, the test fails
with a message naming it (scripts/setup-deps installs everything the tests need).

Each test_*.py runs as: /usr/bin/python3 test_X.py --bin BUILD/bin [unittest options].
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "cli"))  # fixtures.py: the h5py/safetensors writers and the strict reader

BIN: Path | None = None


class Missing(Exception):
    """A program or Python module the tests need is not installed."""


def missing(reason: str) -> None:
    """Ends the run as failed because something the tests need is not installed (for imports at the
    top of a test file)."""
    print(f"FAIL: {reason}; scripts/setup-deps installs it", file=sys.stderr)
    sys.exit(1)


def need_module(name: str):
    try:
        return __import__(name)
    except ImportError as e:
        raise Missing(f"Python module {name} is not installed ({e})") from None


def need_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise Missing(f"{name} is not installed")
    return path


def tool(name: str, *args, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs BIN/name with args; with check, a non-zero exit fails the calling test."""
    p = subprocess.run([str(BIN / name), *map(str, args)], input=stdin if stdin is not None else b"",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{name} {' '.join(map(str, args))}: exit {p.returncode}: {p.stderr.decode()}")
    return p


def inspect_json(*args) -> dict:
    return json.loads(tool("loco-inspect", "--json", *args).stdout)


class TempDirCase(unittest.TestCase):
    """A TestCase with self.tmp, a fresh folder per test (kept when LOCO_KEEP_TMP is set)."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="loco-interop-"))
        if not os.environ.get("LOCO_KEEP_TMP"):
            self.addCleanup(shutil.rmtree, self.tmp, True)


def main(requirements=()) -> None:
    """Parses --bin, checks requirements (callables raising Missing), runs the file's tests, exits
    0 (passed) or 1 (failed, or something required is missing)."""
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", type=Path, required=True, help="folder of the loco binaries")
    args, rest = ap.parse_known_args()
    BIN = args.bin.resolve()
    for t in ("loco-inspect", "loco-convert"):
        if not (BIN / t).is_file():
            print(f"interop: {BIN / t} is not built", file=sys.stderr)
            sys.exit(1)
    try:
        for req in requirements:
            req()
    except Missing as e:
        missing(str(e))
    prog = unittest.main(module="__main__", argv=[sys.argv[0], *rest], exit=False, verbosity=2)
    r = prog.result
    bad = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
    known = len(r.expectedFailures)
    if known:
        print(f"{known} known bugs (expected failures)")
    bad += len(r.skipped)  # a skipped test verifies nothing
    print(f"{r.testsRun - bad - known} passed, {bad} failed")
    sys.exit(0 if bad == 0 else 1)
