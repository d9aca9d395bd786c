#!/usr/bin/env bash
# Benchmark of issue 5: loco's codec kernels against the same operations in PyTorch 1.13 (Debian),
# in one run, on 25,165,824 float32 (6144 x 4096; PowerSGD on 4096 x 4096, rank 4): encode and
# decode times, input GB/s, and the ratio to a memory copy of the tensor measured in the same run
# (memcpy split over the same number of threads).
# Targets: quant 2/4/8-bit, sign, cast >= 40% of copy bandwidth (>= 7x torch); exact top-1% >= 20x
# torch.topk; PowerSGD <= torch; DCT tile top-k >= 3x torch's matmul DCT.
# Usage: bench/compress.sh [REPS=7] [THREADS=2]   (builds loco-bench-codecs in $LOCO_BENCH_BUILD)
set -euo pipefail
source "$(dirname "$0")/common.sh"
reps=${1:-7}
threads=${2:-2}
build=${LOCO_BENCH_BUILD:-$bench_root/build-bench}
cmake -S "$bench_root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLOCO_NATIVE=ON -DLOCO_BUILD_TESTS=OFF \
  -DLOCO_BUILD_BENCH=ON >/dev/null
cmake --build "$build" --target loco-bench-codecs -j "$(nproc)" >/dev/null
dir=$(mktemp -d /tmp/loco-bench-compress.XXXXXX)
trap 'rm -rf "$dir"' EXIT

specs=(quant:bits=8 quant:bits=4 quant:bits=2 sign cast:dtype=f16 cast:dtype=bf16 topk:density=0.01
       powersgd:rank=4 dct_topk:chunk=64,k=4)
LOCO_THREADS=$threads "$build/bin/loco-bench-codecs" --reps "$reps" "${specs[@]}" >"$dir/loco.jsonl"
# Debian's OpenBLAS misdetects this VM's CPU (see bench/train.sh); name the kernel for the peer.
if [[ -z ${OPENBLAS_CORETYPE:-} ]] && grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
BENCH_THREADS=$threads OPENBLAS_NUM_THREADS=1 "$PY" "$bench_root/bench/peers/torch_codecs.py" "$reps" >"$dir/torch.jsonl"

"$PY" - "$dir/loco.jsonl" "$dir/torch.jsonl" "$threads" <<'PYEOF'
import json, sys
loco = [json.loads(l) for l in open(sys.argv[1])]
peer = {}
for l in open(sys.argv[2]):
    d = json.loads(l)
    if "name" in d: peer[(d["name"], d["op"])] = d
    else: meta = d
copy = next(d for d in loco if d["name"] == "memcpy")
# The spec as loco prints it vs the peer's name (the peer names dct_topk without parameters).
key = lambda s: "dct_topk" if s.startswith("dct_topk") else s
print(f"memcpy of 100.7 MB ({copy['threads']} threads): {copy['median_ms']:.1f} ms = {copy['gbs_in']:.2f} GB/s; "
      f"{meta['torch']} with {meta['threads']} threads; loco with {sys.argv[3]} threads\n")
print("| codec | op | loco ms | loco GB/s in | % of copy | torch ms | loco speed-up |")
print("|---|---|---|---|---|---|---|")
for d in loco:
    if d["name"] == "memcpy": continue
    p = peer.get((key(d["name"]), d["op"]))
    pct = 100 * d["gbs_in"] / copy["gbs_in"]
    print(f"| {d['name']} | {d['op']} | {d['median_ms']:.1f} | {d['gbs_in']:.2f} | {pct:.0f}% | "
          + (f"{p['median_ms']:.1f} | {p['median_ms'] / d['median_ms']:.1f}x |" if p else "- | - |"))
PYEOF
