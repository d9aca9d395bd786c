#!/usr/bin/python3
"""Any trainer as a worker (--worker-cmd, scripts/lib/trainer.sh) in the diloco, fedavg and gossip
pipelines.

Checks:
- the plumbing: a worker command that is loco-worker itself (its local model out with --save-local,
  its state copied from {state_in} to {state_out}) ends with the bits of the plain run, in diloco
  (one worker external, --worker-cmd-for), streaming DiLoCo (2 fragments, mixing 0.5: the mix made
  by loco-fragment --mix, the fragment's delta by loco-delta), fedavg (every client) and gossip: the
  placeholders carry the same model, shard, steps, batch, optimizer, schedule, clip, seed and state,
  and loco-delta's delta equals loco-worker's;
- a command that trains nothing (copies {global} to {local}) makes zero deltas: after 2 rounds the
  global model is round 0's, bit for bit;
- DiLoCo with 2 PyTorch workers (share/examples/pytorch/train_worker.py, CPU, deterministic) and 2
  loco-workers, 4 rounds, completes; a run killed with SIGKILL mid-way and rerun ends with the
  uninterrupted run's model, bit for bit;
- errors: an unknown placeholder, --worker-cmd-for outside the workers, a command without {local},
  FedProx or SCAFFOLD with a worker command, streaming with --overlap, demo (usage errors, exit 2, no
  output folder); a failing command stops the run with its exit code and the end of its log and
  leaves no delta; a local model of another shape stops it with exit 4 naming the tensor.

Usage: test_trainers.py --bin BUILD/bin [--work DIR] [--keep]
Exit: 0 passed, 1 a check failed.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipetest import Failure, ROOT, SCRIPTS, check, make_classes, make_text, run, start, tensors  # noqa: E402

EXAMPLE = ROOT / "share" / "examples" / "pytorch" / "train_worker.py"
MLP = '{"arch":"mlp","sizes":[3,8,4]}'

# loco-worker as an external trainer: what the pipeline would have run, through the placeholders.
LOCO_AS_COMMAND = (
    "if [ -n {state_in} ]; then cp {state_in} {state_out}; fi; "
    "BIN/loco-worker --model {global} --data {shard} --steps {steps} --batch {batch} "
    "--optimizer {optimizer} --schedule {schedule} --clip {clip} --seed {seed} --threads {threads} "
    "--worker {worker} --state {state_out} --metrics {metrics} --save-local {local} -o {local}.delta.h5 -q "
    "&& rm -f {local}.delta.h5")
TORCH_COMMAND = (
    f"/usr/bin/python3 -B {EXAMPLE} --global {{global_safetensors}} --data {{shard}} --output {{local}} "
    "--steps {steps} --batch {batch} --lr {lr} --schedule {schedule} --step {step} --clip {clip} "
    "--worker {worker} --seed {seed} --state-in {state_in} --state-out {state_out} --metrics {metrics} "
    "--device cpu --threads 1")


def same_bits(bin_dir, env, a, b):
    """Two models hold the same tensors, bit for bit (loco-inspect --diff exits 0 only then)."""
    run([bin_dir / "loco-inspect", "--diff", a, b], env, code=0)


def main():
    bin_dir, work, env, keep = start(__doc__, "/tmp/loco-trainer-test")
    loco_cmd = LOCO_AS_COMMAND.replace("BIN", str(bin_dir))
    diloco = SCRIPTS / "diloco"
    text = work / "text.txt"
    make_text(text)
    opts = ["--data", text, "--preset", "gpt-tiny", "--workers", "4", "--rounds", "2", "--inner-steps", "3",
            "--batch", "4", "--lr", "3e-3", "--test-fraction", "0.05", "--eval-batch", "16", "--jobs", "2"]
    t0 = time.time()

    def step(name):
        print(f"[{time.time() - t0:6.1f}s] {name}", flush=True)

    step("usage errors")
    bad = work / "bad"
    for extra, msg in (
            (["--worker-cmd", "train {modle} {local}"], "unknown placeholder {modle}"),
            (["--worker-cmd", "train {global}"], "must write the local model to {local}"),
            (["--worker-cmd", loco_cmd, "--worker-cmd-for", "0-2"], "0 is not within the run's 1..4"),
            (["--worker-cmd", loco_cmd, "--worker-cmd-for", "x"], "not an id or a range"),
            (["--worker-cmd-for", "1"], "--worker-cmd-for needs --worker-cmd")):
        p = run([diloco, *opts, "-o", bad, *extra], env, code=2)
        check(msg in p.stderr, f"{extra}: {p.stderr}")
    p = run([SCRIPTS / "demo", *opts, "-o", bad, "--worker-cmd", loco_cmd], env, code=2)
    check("--worker-cmd" in p.stderr, p.stderr)
    p = run([SCRIPTS / "streaming-diloco", *opts, "-o", bad, "--worker-cmd", loco_cmd, "--fragments", 1,
             "--overlap", 1], env, code=2)
    check("--overlap 1 with --worker-cmd" in p.stderr, p.stderr)
    data = work / "d.csv"
    make_classes(data, 400, 3)
    fed = [SCRIPTS / "fedavg", "--data", data, "--label-column", "label", "--model-config", MLP, "--clients", 4,
           "--fraction", "0.5", "--rounds", 2, "--local-steps", 3, "--batch", 8, "--inner-optimizer", "sgd:lr=0.1",
           "--seed", 3, "--jobs", 2]
    for strategy in ("fedprox:proximal_mu=0.01", "scaffold"):
        p = run([*fed, "-o", bad, "--strategy", strategy, "--worker-cmd", loco_cmd], env, code=2)
        check("proximal term and SCAFFOLD" in p.stderr, p.stderr)
    check(not bad.exists(), "a usage error created the output folder")

    step("diloco: worker 3 by a command that is loco-worker ends with the plain run's bits")
    plain, ext = work / "plain", work / "ext"
    run([diloco, *opts, "-o", plain], env)
    run([diloco, *opts, "-o", ext, "--worker-cmd", loco_cmd, "--worker-cmd-for", "3"], env)
    for r in (1, 2):
        same_bits(bin_dir, env, plain / f"rounds/round-{r:04d}.h5", ext / f"rounds/round-{r:04d}.h5")
    check((ext / "state/worker-3/round-0002.state").is_file() and (ext / "state/worker-2/round-0002.h5").is_file(),
          "the external worker's state is not state/worker-3/round-0002.state")
    rp = [json.loads(l) for l in (plain / "metrics.jsonl").read_text().splitlines()]
    re_ = [json.loads(l) for l in (ext / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss", "step", "tokens", "cum_bytes_sent_per_worker"):
        check([x.get(key) for x in rp] == [x.get(key) for x in re_], f"metrics {key}: {rp} vs {re_}")
    # The external worker's training loss comes from its --metrics lines (6 significant digits).
    for a, b in zip(rp[1:], re_[1:]):
        check(abs(a["train_loss"] - b["train_loss"]) <= 1e-5 * abs(a["train_loss"]), f"train_loss {a} vs {b}")
    log = (ext / "commands.log").read_text()
    check("(worker 3)" in log and "loco-delta" in log, "commands.log does not record the worker command")

    step("streaming DiLoCo (P = 2, mixing 0.5): worker 2 by the command, the plain run's bits")
    sopts = [*opts[:opts.index("--inner-steps")], "--inner-steps", "4", *opts[opts.index("--inner-steps") + 2:],
             "--fragments", 2, "--mixing", 0.5]
    run([SCRIPTS / "streaming-diloco", *sopts, "-o", work / "st-plain"], env)
    run([SCRIPTS / "streaming-diloco", *sopts, "-o", work / "st-ext", "--worker-cmd", loco_cmd,
         "--worker-cmd-for", "2"], env)
    for r in (1, 2):
        same_bits(bin_dir, env, work / f"st-plain/rounds/round-{r:04d}.h5", work / f"st-ext/rounds/round-{r:04d}.h5")

    step("fedavg and gossip: every client and node by the command, the plain run's bits")
    run([*fed, "-o", work / "fed-plain"], env)
    run([*fed, "-o", work / "fed-ext", "--worker-cmd", loco_cmd], env)
    same_bits(bin_dir, env, work / "fed-plain/rounds/round-0002.h5", work / "fed-ext/rounds/round-0002.h5")
    gos = [SCRIPTS / "gossip", "--data", data, "--nodes", 4, "--rounds", 2, "--inner-steps", 3, "--batch", 8,
           "--model-config", MLP, "--topology", "ring", "--jobs", 2]
    run([*gos, "-o", work / "gos-plain"], env)
    run([*gos, "-o", work / "gos-ext", "--worker-cmd", loco_cmd, "--worker-cmd-for", "0,2-3"], env)
    same_bits(bin_dir, env, work / "gos-plain/merged/final.h5", work / "gos-ext/merged/final.h5")

    step("a command that trains nothing leaves the model as it was")
    zero = work / "zero"
    run([diloco, *opts, "-o", zero, "--worker-cmd", "cp {global} {local}"], env)
    m0, m2 = tensors(zero / "rounds/round-0000.h5"), tensors(zero / "rounds/round-0002.h5")
    check(m0.keys() == m2.keys() and all(m0[k].tobytes() == m2[k].tobytes() for k in m0),
          "zero deltas changed the model's tensors")

    step("a failing command: its exit code and log, no delta")
    p = run([diloco, *opts, "-o", work / "fail", "--worker-cmd", "echo trainer broke >&2; exit 3 # {local}",
             "--worker-cmd-for", "2"], env, code=None)
    check(p.returncode == 3 and "the worker command failed (exit 3)" in p.stderr and "trainer broke" in p.stderr,
          f"exit {p.returncode}: {p.stderr}")
    check(not (work / "fail/deltas/round-0001/worker-2.h5").exists(), "a failed worker left a delta")
    p = run([diloco, *opts, "-o", work / "shape", "--worker-cmd", f"{bin_dir}/loco-init --preset gpt-d128-l4 -o {{local}}",
             "--worker-cmd-for", "1"], env, code=None)
    check(p.returncode == 4 and "loco-delta" in p.stderr, f"exit {p.returncode}: {p.stderr}")

    step("DiLoCo: 2 PyTorch workers and 2 loco-workers, 4 rounds; killed and rerun, the same bits")
    mixed = [*opts[:opts.index("--rounds")], "--rounds", "4", *opts[opts.index("--rounds") + 2:],
             "--worker-cmd", TORCH_COMMAND, "--worker-cmd-for", "1,3"]
    full, killed = work / "mixed", work / "mixed-killed"
    run([diloco, *mixed, "-o", full], env)
    recs = [json.loads(l) for l in (full / "metrics.jsonl").read_text().splitlines()]
    check([r["round"] for r in recs] == [0, 1, 2, 3, 4] and recs[4]["loss"] < recs[0]["loss"],
          f"the mixed run did not train: {[r['loss'] for r in recs]}")
    w1 = json.loads((full / "deltas/round-0004/worker-1.json").read_text())
    check(w1["step"] == 12 and w1["train_loss_mean"] is not None, f"the PyTorch worker's record: {w1}")
    proc = subprocess.Popen([str(c) for c in [diloco, *mixed, "-o", killed]], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    target = killed / "deltas/round-0003"
    while time.time() < deadline and proc.poll() is None:
        if target.exists() and any(target.glob("worker-*.h5")):
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
    proc.wait()
    check(not (killed / "rounds/round-0004.h5").exists(), "the kill came too late to interrupt anything")
    run([diloco, *mixed, "-o", killed], env)
    for r in (1, 2, 3, 4):
        same_bits(bin_dir, env, full / f"rounds/round-{r:04d}.h5", killed / f"rounds/round-{r:04d}.h5")

    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    step("passed")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
