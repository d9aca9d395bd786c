"""Cases for loco-merge: methods end to end across formats (loco HDF5, safetensors, PyTorch .pt),
hand-computed results, and every refusal with its exit code and message."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import fixtures  # noqa: E402
from clitest import Case  # noqa: E402

TORCH = str(Path(__file__).resolve().parents[2] / "data" / "torch")
# Each case's inputs: this file run as a script writes them into the case's folder.
INPUTS = f"/usr/bin/python3 -B {Path(__file__).resolve()} ."
CFG = {"model_config": '{"type": "mlp"}'}


def write_inputs(folder):
    d = Path(folder)
    f32 = lambda v: np.array(v, dtype=np.float32)  # noqa: E731
    fixtures.write_loco(d / "base.h5", {"w": f32([[0, 0], [0, 0]]), "b": np.array([1, 1], dtype=np.float16),
                                        "n": np.array([5], dtype=np.int64)}, CFG)
    fixtures.write_loco(d / "a.h5", {"w": f32([[1, -2], [3, 0.5]]), "b": np.array([1, 2], dtype=np.float16),
                                     "n": np.array([6], dtype=np.int64)}, CFG)
    fixtures.write_loco(d / "c.h5", {"w": f32([[-3, 1], [1, 0.5]]), "b": np.array([3, 1], dtype=np.float16),
                                     "n": np.array([7], dtype=np.int64)}, CFG)
    fixtures.write_loco(d / "shape.h5", {"w": f32([1, 2, 3]), "b": np.array([3, 1], dtype=np.float16),
                                         "n": np.array([7], dtype=np.int64)}, CFG)
    fixtures.write_loco(d / "extra.h5", {"w": f32([[1, -2], [3, 0.5]]), "b": np.array([1, 2], dtype=np.float16),
                                         "n": np.array([6], dtype=np.int64), "x": f32([4])}, CFG)
    fixtures.write_loco(d / "gpt.h5", {"w": f32([[1, -2], [3, 0.5]]), "b": np.array([1, 2], dtype=np.float16),
                                       "n": np.array([6], dtype=np.int64)}, {"model_config": '{"type": "gpt"}'})


def values(ctx, path, name):
    import h5py
    with h5py.File(ctx.expand(path), "r") as f:
        return f["tensors"][name][()]


def expect(path, name, want):
    def check(ctx, r):
        got = values(ctx, path, name)
        assert np.array_equal(got, np.asarray(want, dtype=got.dtype)), f"{name}: {got}, expected {want}"
    return check


def diff(a, b, code=0):
    """loco-inspect --diff a b exits with code (0: the tensors match)."""
    def check(ctx, r):
        d = ctx.run("loco-inspect", "--diff", a, b)
        assert d.code == code, f"{d.command}: exit {d.code}, expected {code}\n{d.stdout}{d.stderr}"
    return check


def torch_task_arithmetic(ctx, r):
    """nested.pt against itself: zero task vectors, so the merge is the base (w = base[0:2, 0:2])."""
    _, meta, tensors = fixtures.read_safetensors(ctx.expand("{tmp}/m.safetensors"))
    assert sorted(tensors) == ["model.layer.b", "model.layer.w", "optim.0"], sorted(tensors)
    w = tensors["model.layer.w"][1]
    assert np.array_equal(w, np.array([[-3.0, -2.5], [0.0, 0.5]], dtype=np.float32)), w
    assert meta.get("merge_method") == "task_arithmetic", meta


BIG = "loco-init --seed {s} --config '{{\"arch\":\"mlp\",\"sizes\":[400,300,10]}}' -o {o}"

CASES = [
    # Tensors of several parallel chunks (2^16 elements): the same bits at 1 and 3 threads.
    Case("ties, dare_ties and linear over large tensors do not depend on --threads",
         sh="for t in 1 3; do "
            "loco-merge --method ties --threads $t --base b.h5 --density 0.3 -o ties-$t.h5 x.h5 y.h5 && "
            "loco-merge --method dare_ties --threads $t --base b.h5 --density 0.3 -o dare-$t.h5 x.h5 y.h5 && "
            "loco-merge --method linear --threads $t -o linear-$t.h5 x.h5 y.h5 || exit 1; done && "
            "loco-inspect --diff ties-1.h5 ties-3.h5 && loco-inspect --diff dare-1.h5 dare-3.h5 && "
            "loco-inspect --diff linear-1.h5 linear-3.h5",
         setup=[BIG.format(s=1, o="b.h5"), BIG.format(s=2, o="x.h5"), BIG.format(s=3, o="y.h5")]),
    Case("linear average: hand-computed, integers copied from the first model",
         ["--method", "linear", "-o", "{tmp}/m.h5", "a.h5", "c.h5"], setup=[INPUTS],
         check=lambda ctx, r: (expect("{tmp}/m.h5", "w", [[-1, -0.5], [2, 0.5]])(ctx, r),
                               expect("{tmp}/m.h5", "b", [2, 1.5])(ctx, r), expect("{tmp}/m.h5", "n", [6])(ctx, r))),
    Case("weighted linear average, written as safetensors",
         ["--weights", "1,3", "-o", "{tmp}/w.safetensors", "a.h5", "c.h5"], setup=[INPUTS],
         check=lambda ctx, r: np.testing.assert_array_equal(
             fixtures.read_safetensors(ctx.expand("{tmp}/w.safetensors"))[2]["w"][1], [[-2, 0.25], [1.5, 0.5]])),
    Case("ties: sign election and disjoint mean",
         ["--method", "ties", "--base", "base.h5", "-o", "{tmp}/t.h5", "a.h5", "c.h5"], setup=[INPUTS],
         check=expect("{tmp}/t.h5", "w", [[-3, -2], [2, 0.5]])),
    Case("task arithmetic with --lambda",
         ["--method", "task_arithmetic", "--lambda", "0.5", "--base", "base.h5", "-o", "{tmp}/t.h5", "a.h5", "c.h5"],
         setup=[INPUTS], check=expect("{tmp}/t.h5", "w", [[-1, -0.5], [2, 0.5]])),
    Case("task arithmetic reads PyTorch checkpoints",
         ["--method", "task_arithmetic", "--base", f"{TORCH}/nested.pt", "--lambda", "2", "-o", "{tmp}/m.safetensors",
          f"{TORCH}/nested.pt"], check=torch_task_arithmetic),
    Case("dare_ties is reproducible with a seed",
         ["--method", "dare_ties", "--density", "0.5", "--seed", "3", "--base", "base.h5", "-o", "{tmp}/b.h5",
          "a.h5", "c.h5"],
         setup=[INPUTS, "{bin}/loco-merge --method dare_ties --density 0.5 --seed 3 --base base.h5 -o {tmp}/x.h5 "
                "a.h5 c.h5"],
         check=diff("{tmp}/x.h5", "{tmp}/b.h5")),
    Case("slerp at t=0 is the base", ["--method", "slerp", "--t", "0", "--base", "base.h5", "-o", "{tmp}/s.h5",
                                      "a.h5"], setup=[INPUTS], check=diff("{tmp}/base.h5", "{tmp}/s.h5")),
    Case("model_stock of identical models is the model (integers from the base)",
         ["--method", "model_stock", "--base", "base.h5", "-o", "{tmp}/s.h5", "a.h5", "a.h5"], setup=[INPUTS],
         check=lambda ctx, r: (expect("{tmp}/s.h5", "w", [[1, -2], [3, 0.5]])(ctx, r),
                               expect("{tmp}/s.h5", "b", [1, 2])(ctx, r), expect("{tmp}/s.h5", "n", [5])(ctx, r))),
    Case("refuses ties without --base", ["--method", "ties", "-o", "{tmp}/x.h5", "a.h5"], setup=[INPUTS], code=2,
         stderr="ties needs --base", absent="{tmp}/x.h5"),
    Case("refuses slerp without --t", ["--method", "slerp", "-o", "{tmp}/x.h5", "a.h5", "c.h5"], setup=[INPUTS],
         code=2, stderr="--t", absent="{tmp}/x.h5"),
    Case("refuses a weight that is not a number", ["--weights", "1,x", "-o", "{tmp}/x.h5", "a.h5", "c.h5"],
         setup=[INPUTS], code=2, stderr="'x' is not a number"),
    Case("refuses --weights of the wrong count", ["--weights", "1", "-o", "{tmp}/x.h5", "a.h5", "c.h5"],
         setup=[INPUTS], code=2, stderr="1 values for 2 models"),
    Case("refuses shapes that disagree, naming the tensor", ["-o", "{tmp}/x.h5", "a.h5", "shape.h5"], setup=[INPUTS],
         code=4, stderr=["tensor w", "shape.h5"], absent="{tmp}/x.h5"),
    Case("refuses model configs that disagree", ["-o", "{tmp}/x.h5", "a.h5", "gpt.h5"], setup=[INPUTS],
         code=4, stderr=["gpt.h5", "model_config"], absent="{tmp}/x.h5"),
    Case("refuses a tensor one model lacks", ["-o", "{tmp}/x.h5", "extra.h5", "a.h5"], setup=[INPUTS], code=4,
         stderr=["no tensor x", "--allow-missing"], absent="{tmp}/x.h5"),
    Case("--allow-missing carries it through from the reference",
         ["--allow-missing", "-o", "{tmp}/x.h5", "extra.h5", "a.h5"], setup=[INPUTS],
         check=diff("{tmp}/extra.h5", "{tmp}/x.h5")),
    Case("refuses a legacy torch.save file by name", ["-o", "{tmp}/x.h5", f"{TORCH}/legacy.pt", f"{TORCH}/nested.pt"],
         code=4, stderr="legacy (pre-1.6) torch.save"),
    Case("refuses a TorchScript archive", ["-o", "{tmp}/x.h5", f"{TORCH}/script.pt", f"{TORCH}/nested.pt"], code=4,
         stderr="TorchScript"),
    Case("refuses a pickle with a class off the allow-list",
         ["-o", "{tmp}/x.h5", f"{TORCH}/evil.pt", f"{TORCH}/nested.pt"], code=4,
         stderr=["__main__.NotAllowed", "allow-list"]),
    Case("never overwrites an input", ["-o", "{tmp}/a.h5", "a.h5", "c.h5"], setup=[INPUTS], code=2,
         unchanged="{tmp}/a.h5"),
    # Issue 19: a model_config nested 100,000 levels deep (HDF5 attribute) is refused when parsed.
    Case("a model_config nested 100,000 levels is refused, not a stack overflow",
         ["-o", "{tmp}/m.h5", "x.h5", "y.h5"],
         setup=[f"/usr/bin/python3 {Path(__file__).resolve().parents[1] / 'hostile.py'} deep-config-h5 x.h5 100000",
                "cp x.h5 y.h5"], code=4, absent="{tmp}/m.h5",
         stderr_re=r"\Aloco-merge: error: .*x.h5: model_config: JSON nests deeper than 64 levels"),
    Case("--lambda nan is a usage error", ["--method", "task_arithmetic", "--lambda", "nan", "--base", "base.h5", "-o",
                                           "{tmp}/t.h5", "a.h5", "c.h5"], setup=[INPUTS], code=2,
         stderr="nan is not a finite number", absent="{tmp}/t.h5"),
]

if __name__ == "__main__":
    write_inputs(sys.argv[1])
