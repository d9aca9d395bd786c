#!/usr/bin/python3
"""A PyTorch trainer as a loco worker (share/examples/pytorch/train_worker.py) and loco-delta:

- 0 inner steps make a zero delta, and the outer step on it leaves the model bit-identical;
- the trainer's delta written as safetensors is a delta to every tool (inspect, aggregate, convert
  back to .h5 with its typed attributes), and equals the one written as .h5;
- a rerun of a round from the same immutable state writes the same bits (CPU, one thread,
  deterministic algorithms), and the state file it read is unchanged;
- loco-delta refuses a local model with a missing, extra or misshapen tensor (exit 4, naming it)
  or a non-finite value (exit 5), and leaves no output.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import interop  # noqa: E402
from interop import TempDirCase, tool

try:
    import h5py
    import numpy as np
except ImportError as e:
    interop.missing(f"numpy or h5py is missing ({e})")
try:
    import torch
except ImportError as e:
    interop.missing(f"PyTorch is not installed (Debian: python3-torch) ({e})")

EXAMPLE = interop.HERE.parent.parent / "share" / "examples" / "pytorch"
sys.path.insert(0, str(EXAMPLE))
import loco_gpt  # noqa: E402


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tensors_h5(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: np.asarray(v) for k, v in f["tensors"].items()}


class TrainerCase(TempDirCase):
    def setUp(self):
        super().setUp()
        text = self.tmp / "text.txt"
        rng = np.random.default_rng(7)
        words = ["in", "the", "beginning", "was", "word", "and", "light", "darkness", "waters", "earth"]
        text.write_text(" ".join(rng.choice(words, 6000)) + "\n")
        tool("loco-shard", "--source", "text", "--input", text, "--shards", 2, "--test-fraction", 0.1,
             "-o", self.tmp / "kjv")
        self.shard = next(self.tmp.glob("kjv-00001-of-00002.h5"))
        self.model = self.tmp / "round-0.h5"
        tool("loco-init", "--preset", "gpt-tiny", "--seed", 3, "-o", self.model)

    def train(self, out, steps, state_in=None, state_out=None, worker=1):
        cmd = [sys.executable, str(EXAMPLE / "train_worker.py"), "--global", str(self.model), "--data", str(self.shard),
               "--output", str(out), "--steps", str(steps), "--batch", "4", "--lr", "3e-3",
               "--schedule", "cosine:warmup=2,total=10", "--worker", str(worker), "--seed", "1", "--device", "cpu"]
        if state_in:
            cmd += ["--state-in", str(state_in)]
        if state_out:
            cmd += ["--state-out", str(state_out)]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr.decode())

    def test_zero_steps_make_a_zero_delta_and_leave_the_model(self):
        local = self.tmp / "local.safetensors"
        self.train(local, 0)
        delta = self.tmp / "d1.h5"
        tool("loco-delta", "--base", self.model, "--local", local, "--worker", 1, "--samples", 64, "-o", delta)
        with h5py.File(delta, "r") as f:
            self.assertEqual(f.attrs["kind"], "delta")
            self.assertEqual((int(f.attrs["worker"]), int(f.attrs["samples"]), int(f.attrs["round"])), (1, 64, 0))
            for k, v in f["tensors"].items():
                self.assertFalse(np.any(np.asarray(v)), k)
        summary = json.loads(tool("loco-inspect", "--json", "--checksum", self.model).stdout)
        with h5py.File(delta, "r") as f:
            self.assertEqual(f.attrs["base_checksum"], summary["tensors_checksum"])
        new = self.tmp / "round-1.h5"
        tool("loco-aggregate", "--model", self.model, "-o", new, delta)  # DiLoCo's outer Nesterov
        a, b = tensors_h5(self.model), tensors_h5(new)
        self.assertEqual(a.keys(), b.keys())
        for k in a:
            np.testing.assert_array_equal(a[k].view(np.uint32), b[k].view(np.uint32), err_msg=k)

    def test_a_trained_delta_in_safetensors_is_a_delta_to_every_tool(self):
        local = self.tmp / "local.safetensors"
        self.train(local, 3, state_out=self.tmp / "w1.pt")
        d_h5, d_st = self.tmp / "d1.h5", self.tmp / "d1.safetensors"
        for d in (d_h5, d_st):
            tool("loco-delta", "--base", self.model, "--local", local, "--worker", 1, "--samples", 12,
                 "--inner-steps", 3, "-o", d)
        info = json.loads(tool("loco-inspect", "--json", d_st).stdout)
        self.assertEqual(info["kind"], "delta")
        # Δ = θ_global − θ_local, in float32, as loco-worker computes it.
        glob, loc = tensors_h5(self.model), loco_gpt.read_safetensors(str(local))[0]
        got = tensors_h5(d_h5)
        for k in glob:
            want = glob[k] - loc[k].numpy()
            np.testing.assert_array_equal(got[k], want, err_msg=k)
            self.assertTrue(np.any(want), f"{k}: three AdamW steps left it unchanged")
        # The safetensors delta aggregates to the same model as the .h5 one, and converts back with its types.
        outs = []
        for d in (d_h5, d_st):
            out = self.tmp / f"round-1-{d.suffix[1:]}.h5"
            tool("loco-aggregate", "--model", self.model, "--reduce", "weighted-mean", "-o", out, d)
            outs.append(tensors_h5(out))
        for k in outs[0]:
            np.testing.assert_array_equal(outs[0][k], outs[1][k], err_msg=k)
        back = self.tmp / "back.h5"
        tool("loco-convert", d_st, back)
        with h5py.File(back, "r") as f, h5py.File(d_h5, "r") as g:
            self.assertEqual(f.attrs["kind"], "delta")
            for key in ("round", "worker", "samples", "inner_steps"):
                self.assertEqual(f.attrs[key].dtype, np.int64, key)
                self.assertEqual(f.attrs[key], g.attrs[key], key)
            self.assertEqual(f.attrs["base_checksum"], g.attrs["base_checksum"])

    def test_a_rerun_from_the_same_state_writes_the_same_bits(self):
        s1 = self.tmp / "w1-r1.pt"
        self.train(self.tmp / "a.safetensors", 2, state_out=s1)
        before = sha(s1)
        for name in ("b.safetensors", "c.safetensors"):
            self.train(self.tmp / name, 3, state_in=s1, state_out=self.tmp / f"{name}.state.pt")
        self.assertEqual(sha(s1), before, "the input state was modified")
        self.assertEqual(sha(self.tmp / "b.safetensors"), sha(self.tmp / "c.safetensors"))
        self.assertNotEqual(sha(self.tmp / "a.safetensors"), sha(self.tmp / "b.safetensors"))
        state = torch.load(self.tmp / "b.safetensors.state.pt")
        self.assertEqual(state["step"], 5)

    def test_a_local_model_that_does_not_fit_is_refused(self):
        tensors = {k: torch.from_numpy(v) for k, v in tensors_h5(self.model).items()}
        cases = []
        missing = dict(tensors)
        del missing["ln_f.bias"]
        cases.append(("missing", missing, 4, "ln_f.bias"))
        extra = dict(tensors, **{"blocks.0.attn.mask": torch.zeros(4)})
        cases.append(("extra", extra, 4, "blocks.0.attn.mask"))
        shaped = dict(tensors, **{"wpe.weight": tensors["wpe.weight"][:-1]})
        cases.append(("shape", shaped, 4, "wpe.weight"))
        bad = {k: v.clone() for k, v in tensors.items()}
        bad["head.weight"][0, 0] = float("nan")
        cases.append(("nan", bad, 5, "head.weight"))
        for name, ts, code, needle in cases:
            local = self.tmp / f"{name}.safetensors"
            loco_gpt.write_safetensors(str(local), ts)
            out = self.tmp / f"{name}-delta.h5"
            p = tool("loco-delta", "--base", self.model, "--local", local, "--worker", 0, "-o", out, check=False)
            err = p.stderr.decode()
            self.assertEqual(p.returncode, code, f"{name}: {err}")
            self.assertIn(needle, err, name)
            self.assertIn(str(local), err, name)
            self.assertFalse(out.exists(), f"{name}: an output was left behind")
            self.assertEqual([q.name for q in self.tmp.iterdir() if q.name.startswith(".")], [], name)


if __name__ == "__main__":
    interop.main()
