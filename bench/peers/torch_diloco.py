# An independent PyTorch implementation of DiLoCo and its synchronous baseline, for checking
# loco's pipeline against a reference on the same data: the same GPT (models.md), the same
# initial weights (read from loco's round-0 file), the same shards and held-out text (loco's
# shard files), the same inner AdamW, clipping and schedule, and torch's own Nesterov SGD as the
# outer optimizer, written the way the DiLoCo paper and OpenDiLoCo describe it. Batches are drawn
# with torch's generator (uniform window offsets, as loco's worker does), so the two runs see
# different but identically distributed batches.
# Usage: /usr/bin/python3 torch_diloco.py RUN_DIR OUT.jsonl --mode diloco|baseline [--workers 4]
#        [--rounds 20] [--inner-steps 50] [--batch 32] [--lr 4e-4] [--warmup 100] [--min-lr 0]
#        [--outer-lr 0.7] [--momentum 0.9] [--seed 1]
# RUN_DIR: a loco diloco/baseline output folder (rounds/round-0000.h5, shards/data-*.h5).
import argparse, glob, json, math, os, time
import h5py, numpy as np
import sys
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../share/examples/pytorch"))
import loco_gpt  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("run_dir"); ap.add_argument("out")
ap.add_argument("--mode", choices=["diloco", "baseline"], required=True)
ap.add_argument("--workers", type=int, default=4); ap.add_argument("--rounds", type=int, default=20)
ap.add_argument("--inner-steps", type=int, default=50); ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--lr", type=float, default=4e-4); ap.add_argument("--warmup", type=int, default=100)
ap.add_argument("--min-lr", type=float, default=0.0)
ap.add_argument("--outer-lr", type=float, default=0.7); ap.add_argument("--momentum", type=float, default=0.9)
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
torch.manual_seed(a.seed)

with h5py.File(os.path.join(a.run_dir, "rounds/round-0000.h5")) as f:
    cfg = json.loads(f.attrs["model_config"])
    init = {k: torch.from_numpy(np.array(v)) for k, v in f["tensors"].items()}
V, T = cfg["vocab"], cfg["ctx"]


def GPT():  # loco's GPT in PyTorch: the module of the example trainer (share/examples/pytorch)
    return loco_gpt.GPT(cfg)


def load_tokens(path):
    with h5py.File(path) as f:
        return torch.from_numpy(np.array(f["data/tokens"]).astype(np.int64))


shards = [load_tokens(p) for p in sorted(glob.glob(os.path.join(a.run_dir, "shards/data-0*.h5")))]
test = load_tokens(os.path.join(a.run_dir, "shards/data-test.h5"))
assert len(shards) == a.workers, f"{len(shards)} shards for {a.workers} workers"


def make_model():
    m = GPT()
    missing = m.load_state_dict(init, strict=True)
    return m


def lr_at(t, total):  # loco's schedule: warm-up from lr/W, cosine to min_lr at total
    if t < a.warmup:
        return a.lr * (t + 1) / a.warmup
    p = min(1.0, (t - a.warmup) / (total - a.warmup))
    c = (1 + math.cos(math.pi * p)) / 2
    return a.lr * c + a.min_lr * (1 - c)


def batch(tokens, n):
    off = torch.randint(0, tokens.numel() - T, (n,))
    w = torch.stack([tokens[o:o + T + 1] for o in off.tolist()])
    return w[:, :-1], w[:, 1:]


@torch.no_grad()
def held_out(m):  # windows of ctx+1 tokens overlapping by one: every token after the first once
    tot, cnt = 0.0, 0
    starts = list(range(0, test.numel() - 1, T))
    for i in range(0, len(starts), 64):
        for s in starts[i:i + 64]:
            w = test[s:s + T + 1]
            if w.numel() < 2: continue
            lo = F.cross_entropy(m(w[None, :-1])[0], w[1:], reduction="sum")
            tot += lo.item(); cnt += w.numel() - 1
    return tot / cnt


total = a.rounds * a.inner_steps
out = open(a.out, "w")
def log(r, m, t0):
    out.write(json.dumps({"round": r, "loss": held_out(m), "seconds": time.time() - t0}) + "\n"); out.flush()

t0 = time.time()
if a.mode == "baseline":  # one worker, global batch M x B over the union of the shards
    m = make_model()
    opt = torch.optim.AdamW(m.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    log(0, m, t0)
    for step in range(total):
        for g in opt.param_groups: g["lr"] = lr_at(step, total)
        xs, ys = zip(*(batch(s, a.batch) for s in shards))
        x, y = torch.cat(xs), torch.cat(ys)
        loss = F.cross_entropy(m(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
        if (step + 1) % a.inner_steps == 0: log((step + 1) // a.inner_steps, m, t0)
else:
    glob_m = make_model()
    outer = torch.optim.SGD(glob_m.parameters(), lr=a.outer_lr, momentum=a.momentum, nesterov=True)
    workers = [make_model() for _ in range(a.workers)]
    inner = [torch.optim.AdamW(w.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1) for w in workers]
    log(0, glob_m, t0)
    for r in range(a.rounds):
        deltas = [torch.zeros_like(p) for p in glob_m.parameters()]
        for w, opt, shard in zip(workers, inner, shards):
            w.load_state_dict(glob_m.state_dict())  # inner AdamW state stays with the worker
            for h in range(a.inner_steps):
                step = r * a.inner_steps + h
                for g in opt.param_groups: g["lr"] = lr_at(step, total)
                x, y = batch(shard, a.batch)
                loss = F.cross_entropy(w(x).reshape(-1, V), y.reshape(-1))
                opt.zero_grad(set_to_none=True); loss.backward()
                torch.nn.utils.clip_grad_norm_(w.parameters(), 1.0); opt.step()
            for d, pg, pl in zip(deltas, glob_m.parameters(), w.parameters()):
                d += (pg.detach() - pl.detach()) / a.workers
        outer.zero_grad(set_to_none=True)
        for p, d in zip(glob_m.parameters(), deltas): p.grad = d
        outer.step()
        log(r + 1, glob_m, t0)
