"""Helpers shared by the pipeline tests: failures, running a command, generated data, digests."""
import argparse
import hashlib
import os
import random
import shutil
import subprocess
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def run(cmd, env=None, code=0, **kw):
    """Runs cmd (items str()-ed); fails unless it exits with code (None: any). Returns the result."""
    p = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=300, **kw)
    if code is not None and p.returncode != code:
        raise Failure(f"{' '.join(map(str, cmd))}: exit {p.returncode}, expected {code}\n"
                      f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}")
    return p


def make_text(path, n_bytes=60000):
    """Deterministic pseudo-English: words drawn from a small vocabulary, in verses."""
    rng = random.Random(7)
    words = ("and the lord said unto moses of israel in his land they were all that he "
             "shall be with them which come upon this day thou hast given me").split()
    out, size = [], 0
    while size < n_bytes:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(6, 18))).capitalize() + ".\n"
        out.append(line)
        size += len(line)
    path.write_text("".join(out))


def make_classes(path, rows, seed):
    """A CSV of 4 classes separable in two of three features (columns a, b, c, label)."""
    rng = random.Random(seed)
    lines = ["a,b,c,label"]
    for i in range(rows):
        y = i % 4
        lines.append(f"{[1, -1, 0, 0][y] + rng.gauss(0, 0.7):.4f},{[0, 0, 1, -1][y] + rng.gauss(0, 0.7):.4f},"
                     f"{rng.gauss(0, 1):.4f},{y}")
    path.write_text("\n".join(lines) + "\n")


def tree_digest(folder, skip=("logs", "commands.log")):
    """{relative path: (sha256, mtime_ns)} of every file under folder, except the top-level skip."""
    res = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel.split("/")[0] not in skip:
            res[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return res


def log_lines(folder):
    return (Path(folder) / "commands.log").read_text().splitlines()


def tensors(path, group="tensors"):
    """{name: array} of one group of an HDF5 file."""
    with h5py.File(path, "r") as f:
        return {k: f[group][k][()] for k in f[group]}


def start(doc, default_work):
    """The command line every pipeline test takes (--bin, --work, --keep): a fresh work folder and
    the tools' environment (LOCO_BIN, one thread). Returns (bin_dir, work, env, keep)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, type=Path)
    ap.add_argument("--work", type=Path, default=Path(default_work))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    bin_dir, work = a.bin.resolve(), a.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return bin_dir, work, dict(os.environ, LOCO_BIN=str(bin_dir), LOCO_THREADS="1"), a.keep
