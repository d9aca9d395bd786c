# PyTorch peer of bench/train.sh: the same models as loco's models.md (byte-level GPT with pre-LN,
# tanh GELU, untied head; MLP with ReLU), the same batch and optimizer, timed per training step.
# Usage: /usr/bin/python3 torch_train.py gpt D_MODEL LAYERS STEPS | mlp STEPS   (threads: BENCH_THREADS, default 2)
import math, os, statistics, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(os.environ.get("BENCH_THREADS", "2"))
torch.set_num_threads(threads)
torch.manual_seed(0)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        a = a.masked_fill(mask[:t, :t], float("-inf")).softmax(-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, ctx, d, layers, heads):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)
        self.register_buffer("mask", torch.triu(torch.ones(ctx, ctx, dtype=torch.bool), 1))

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x, self.mask)
        return self.head(self.ln_f(x))


def timed(step, steps, warmup=3):
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    return ts


kind = sys.argv[1]
if kind == "gpt":
    d, layers, steps = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    B, T, V = 32, 128, 256
    m = GPT(V, T, d, layers, 4)
    opt = torch.optim.AdamW(m.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.1)
    data = torch.randint(0, V, (B, T + 1))
    x, y = data[:, :-1], data[:, 1:]

    def step():
        loss = F.cross_entropy(m(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    ts, per = timed(step, steps), B * T
else:
    steps = int(sys.argv[2])
    B = 128
    m = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(B, 784), torch.randint(0, 10, (B,))

    def step():
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    ts, per = timed(step, steps, warmup=20), B
print(f"{statistics.median(ts):.6f} {min(ts):.6f} {max(ts):.6f} {per}")
