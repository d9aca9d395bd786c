#!/usr/bin/env python3
"""A PyTorch trainer as a loco worker: one round of H inner AdamW steps from the global model.

It does what loco-worker does for a GPT, in PyTorch, on CUDA when present and the CPU otherwise:
reads the round's global model (loco .h5 or .safetensors) and the worker's token shard (loco-shard
--source text), trains --steps steps with AdamW and loco's learning-rate schedule and gradient
clipping, and writes its local model (.safetensors or a torch.save .pt state_dict), which
`loco-delta --base GLOBAL --local LOCAL` turns into the round's delta. Its AdamW moments and step
count travel from round to round in --state-in / --state-out: the input state is never modified,
so a rerun of the same round starts from the same state and (on the CPU, where the run is made
deterministic) writes the same bits.

  train_worker.py --global round-3.h5 --data shard-2.h5 --output local.safetensors \
      --steps 50 --batch 16 --lr 3e-3 --schedule cosine:warmup=100,total=1000 \
      --worker 2 --seed 1 --state-in w2-round-3.pt --state-out w2-round-4.pt

The batches are windows of ctx + 1 tokens at offsets drawn from a generator keyed by (seed,
worker, step), step counting across rounds, as loco-worker draws them (from its own generator, so
the two draw different but identically distributed batches).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loco_gpt  # noqa: E402


def parse_schedule(text: str) -> dict:
    """loco's schedule text: constant|linear|cosine[:warmup=W,total=T,min_lr=M] (loco-worker --schedule)."""
    kind, _, rest = text.partition(":")
    if kind not in ("constant", "linear", "cosine"):
        raise SystemExit(f"train_worker: unknown schedule {kind!r}")
    s = {"kind": kind, "warmup": 0, "total": 0, "min_lr": 0.0}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        if k not in s or k == "kind":
            raise SystemExit(f"train_worker: unknown schedule key {k!r}")
        s[k] = float(v) if k == "min_lr" else int(v)
    if kind != "constant" and s["total"] <= s["warmup"]:
        raise SystemExit("train_worker: linear and cosine schedules need total > warmup")
    return s


def scheduled_lr(s: dict, lr: float, t: int) -> float:
    """loco's schedule (lib/loco/optim/schedule.hpp): warm-up from lr/W, then constant, linear or cosine."""
    w, total = s["warmup"], s["total"]
    if t < w:
        return lr * (t + 1) / w
    if s["kind"] == "constant":
        return lr
    if t >= total:
        return s["min_lr"]
    p = (t - w) / (total - w)
    c = 1 - p if s["kind"] == "linear" else (1 + math.cos(math.pi * p)) / 2
    return lr * c + s["min_lr"] * (1 - c)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--global", dest="global_model", required=True, help="the round's global model (.h5 or .safetensors)")
    ap.add_argument("--data", required=True, help="the worker's token shard (.h5)")
    ap.add_argument("--output", required=True, help="the local model after training (.safetensors or .pt)")
    ap.add_argument("--steps", type=int, required=True, help="inner steps H (0: the local model is the global one)")
    ap.add_argument("--batch", type=int, default=16, help="windows of ctx+1 tokens per step [16]")
    ap.add_argument("--lr", type=float, default=4e-4, help="AdamW's peak learning rate [4e-4]")
    ap.add_argument("--schedule", default="constant", help="loco's schedule text [constant]")
    ap.add_argument("--step", type=int, default=None,
                    help="schedule position before this call (default: the --state-in step, else 0)")
    ap.add_argument("--weight-decay", type=float, default=0.1, help="AdamW's decoupled weight decay [0.1]")
    ap.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip, 0 for none [1.0]")
    ap.add_argument("--worker", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--state-in", default=None, help="this worker's state from the previous round (read only)")
    ap.add_argument("--state-out", default=None, help="where to write this worker's state after the round")
    ap.add_argument("--metrics", default=None,
                    help="append one JSON line per step here (step, loss, lr), as loco-worker --metrics does")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1 makes CPU runs bit-reproducible) [1]")
    a = ap.parse_args()
    if a.steps < 0 or a.batch < 1 or a.worker < 0:
        raise SystemExit("train_worker: --steps >= 0, --batch >= 1 and --worker >= 0 are required")

    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    if device.type == "cpu":  # reruns give the same bits: one thread, deterministic kernels
        torch.set_num_threads(a.threads)
        torch.use_deterministic_algorithms(True)

    config, tensors, _ = loco_gpt.read_model(a.global_model)
    model = loco_gpt.GPT(config)
    model.load_state_dict(tensors, strict=True)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=a.weight_decay)
    step0 = 0
    if a.state_in:
        state = torch.load(a.state_in, map_location=device)
        if state.get("worker") != a.worker or state.get("model_config") != config:
            raise SystemExit(f"train_worker: {a.state_in} belongs to worker {state.get('worker')} or another model")
        opt.load_state_dict(state["adamw"])
        step0 = state["step"]
    if a.step is not None:
        step0 = a.step
    schedule = parse_schedule(a.schedule)

    tokens = loco_gpt.read_tokens(a.data)
    ctx = config["ctx"]
    if tokens.numel() < ctx + 1:
        raise SystemExit(f"train_worker: {a.data} holds {tokens.numel()} tokens, fewer than ctx + 1 = {ctx + 1}")
    model.train()
    lines = []
    for h in range(a.steps):
        t = step0 + h
        key = int(np.random.SeedSequence([a.seed, a.worker, t]).generate_state(1, np.uint64)[0]) >> 1
        gen = torch.Generator().manual_seed(key)
        off = torch.randint(0, tokens.numel() - ctx, (a.batch,), generator=gen)
        w = torch.stack([tokens[o:o + ctx + 1] for o in off.tolist()]).to(device)
        for g in opt.param_groups:
            g["lr"] = scheduled_lr(schedule, a.lr, t)
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        if not torch.isfinite(loss):
            print(f"train_worker: non-finite loss at step {t}; nothing written", file=sys.stderr)
            return 5
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        lines.append(json.dumps({"worker": a.worker, "step": t, "loss": float(loss), "lr": g["lr"]}))

    local = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {"kind": "model", "model_config": json.dumps(config, sort_keys=True, separators=(",", ":"))}
    if a.output.endswith(".pt"):
        loco_gpt.atomic_torch_save(local, a.output)
    else:
        loco_gpt.write_safetensors(a.output, local, meta)
    if a.metrics:  # one write after training: a killed run leaves no partial lines
        with open(a.metrics, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    if a.state_out:  # after the model: a crash between the two reruns the round from the old state
        loco_gpt.atomic_torch_save({"adamw": opt.state_dict(), "step": step0 + a.steps, "worker": a.worker,
                                    "model_config": config}, a.state_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
