# PyTorch peer of bench/compress.sh: the same codec operations as loco-bench-codecs on the same
# tensor size, written the way a careful PyTorch user would (vectorized tensor ops, no Python loops
# over elements), timed as medians after one warm-up. Prints one JSON object per line.
# Usage: /usr/bin/python3 torch_codecs.py [REPS=7]   (threads: BENCH_THREADS, default 2)
import json, os, statistics, sys, time
import torch

threads = int(os.environ.get("BENCH_THREADS", "2"))
torch.set_num_threads(threads)
reps = int(sys.argv[1]) if len(sys.argv) > 1 else 7
N = 6144 * 4096
torch.manual_seed(0)
x = torch.randn(N)


def timed(name, op, fn, nbytes=N * 4):
    fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); t.append(time.perf_counter() - t0)
    m = statistics.median(t)
    print(json.dumps({"name": name, "op": op, "median_ms": m * 1e3, "min_ms": min(t) * 1e3, "max_ms": max(t) * 1e3,
                      "gbs_in": nbytes / m / 1e9}), flush=True)


# Block min-max quantization (block 256, nearest rounding), codes packed little-endian in bytes.
B = 256
def quant_encode(bits):
    v = x.view(-1, B)
    lo, hi = v.amin(1, keepdim=True), v.amax(1, keepdim=True)
    step = (hi - lo) / ((1 << bits) - 1)
    q = ((v - lo) / step.clamp_min(1e-30)).round_().to(torch.uint8).view(-1, 8 // bits)
    packed = q[:, 0].clone()
    for j in range(1, 8 // bits):
        packed |= q[:, j] << (bits * j)
    return packed, lo, step

def quant_decode(bits, packed, lo, step):
    per = 8 // bits
    if per > 1:
        q = (packed.unsqueeze(1) >> torch.arange(0, 8, bits, dtype=torch.uint8)) & ((1 << bits) - 1)
    else:
        q = packed
    return q.view(-1, B).float().mul_(step).add_(lo).view(-1)

for bits in (8, 4, 2):
    enc = quant_encode(bits)
    timed(f"quant:bits={bits}", "encode", lambda: quant_encode(bits))
    timed(f"quant:bits={bits}", "decode", lambda: quant_decode(bits, *enc))

# Scaled sign: 1 bit per element and the mean |x|.
shifts = torch.arange(8, dtype=torch.uint8)
def sign_encode():
    b = (x >= 0).view(-1, 8).to(torch.uint8) << shifts
    return b.sum(1, dtype=torch.uint8), x.abs().mean()
def sign_decode(p, s):
    return (((p.unsqueeze(1) >> shifts) & 1).view(-1).float() * 2 - 1) * s
se = sign_encode()
timed("sign", "encode", sign_encode)
timed("sign", "decode", lambda: sign_decode(*se))

# Casts.
for dt, name in ((torch.float16, "f16"), (torch.bfloat16, "bf16")):
    h = x.to(dt)
    timed(f"cast:dtype={name}", "encode", lambda: x.to(dt))
    timed(f"cast:dtype={name}", "decode", lambda: h.float())

# Exact top-1% by magnitude: indices and values; decode scatters into zeros.
K = N // 100
def topk_encode():
    idx = torch.topk(x.abs(), K, sorted=False).indices
    return idx, x[idx]
ti = topk_encode()
timed("topk:density=0.01", "encode", topk_encode)
def topk_decode(idx, val):
    y = torch.zeros(N); y[idx] = val; return y
timed("topk:density=0.01", "decode", lambda: topk_decode(*ti))

# PowerSGD, rank 4, one power iteration on a 4096 x 4096 matrix with a warm Q.
M = x[: 4096 * 4096].view(4096, 4096)
Q = torch.randn(4096, 4)
def powersgd_encode():
    P = M @ Q
    P, _ = torch.linalg.qr(P)
    return P, M.t() @ P
pq = powersgd_encode()
timed("powersgd:rank=4", "encode", powersgd_encode, 4096 * 4096 * 4)
timed("powersgd:rank=4", "decode", lambda: pq[0] @ pq[1].t(), 4096 * 4096 * 4)

# DCT-II over chunks of 64 (orthonormal basis as a matrix), keep the top 4 per chunk.
C, KC = 64, 4
n = torch.arange(C, dtype=torch.float64)
D = torch.cos(torch.pi / C * (n[None, :] + 0.5) * n[:, None])
D[0] *= (1 / C) ** 0.5; D[1:] *= (2 / C) ** 0.5
D = D.float()
def dct_encode():
    coef = x.view(-1, C) @ D.t()
    idx = coef.abs().topk(KC, dim=1, sorted=False).indices
    return idx.to(torch.uint8), coef.gather(1, idx)
de = dct_encode()
def dct_decode(idx, val):
    coef = torch.zeros(N // C, C); coef.scatter_(1, idx.long(), val); return (coef @ D).view(-1)
timed("dct_topk", "encode", dct_encode)
timed("dct_topk", "decode", lambda: dct_decode(*de))
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}))
