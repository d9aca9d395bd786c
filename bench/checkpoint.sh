#!/usr/bin/env bash
# Benchmark of issue 6: conversion of a >= 1 GiB PyTorch .pt (written by torch.save in this run) to
# loco HDF5, and merges of three >= 1 GiB checkpoints with loco-merge (linear and TIES), as GB/s
# of input read against the page-cache read bandwidth measured in the same run, with peak memory
# (/usr/bin/time) against the bound inputs x largest tensor + 64 MiB; and a numpy implementation
# of the same linear merge (safetensors read through np.memmap, the mean per tensor, a safetensors
# written) timed the same way. Targets: >= 50% of page-cache read bandwidth; peak memory within
# the bound.
# Usage: bench/checkpoint.sh [REPEATS=3] [DIR=/tmp/loco-bench-checkpoint]
# Environment: LOCO_BIN (the built tools), LOCO_FSYNC (default here: 0, the disk aside; see
# docs/decisions.md).
set -euo pipefail
source "$(dirname "$0")/common.sh"
reps=${1:-3}
dir=${2:-/tmp/loco-bench-checkpoint}
export LOCO_FSYNC=${LOCO_FSYNC:-0}
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

# The GPT-like layout of bench/peers/layout.py (as bench/convert.sh): 1.0 GiB in 98 float32 tensors.
"$PY" - "$dir" "$bench_root/bench/peers" <<'PYEOF'
import json, struct, sys
import numpy as np
d = sys.argv[1]
sys.path.insert(0, sys.argv[-1])
from layout import gpt_shapes
shapes = gpt_shapes()
names = sorted(shapes)
for k in range(3):
    rng = np.random.default_rng(k)
    header, off = {}, 0
    for name in names:
        n = int(np.prod(shapes[name])) * 4
        header[name] = {"dtype": "F32", "shape": list(shapes[name]), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(f"{d}/m{k}.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for name in names:
            f.write(rng.standard_normal(shapes[name], dtype=np.float32).tobytes())
PYEOF
# The .pt: the first checkpoint as a torch state dict, saved by torch.save itself.
"$PY" - "$dir" <<'PYEOF'
import collections, json, struct, sys
import numpy as np, torch
d = sys.argv[1]
raw = open(f"{d}/m0.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
sd = collections.OrderedDict()
for name, e in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    a, b = e["data_offsets"]
    sd[name] = torch.from_numpy(np.frombuffer(raw, np.float32, (b - a) // 4, 8 + n + a).reshape(e["shape"]).copy())
del raw
torch.save(sd, f"{d}/model.pt")
PYEOF

# numpy's linear merge: the same work as loco-merge --method linear on the three files.
cat >"$dir/np_merge.py" <<'PYEOF'
import json, struct, sys
import numpy as np
out, ins = sys.argv[1], sys.argv[2:]
heads = []
for p in ins:
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        heads.append((n, json.loads(f.read(n))))
maps = [np.memmap(p, np.uint8, "r") for p in ins]
n0, h0 = heads[0]
names = sorted(h0, key=lambda k: h0[k]["data_offsets"][0])
header, off = {}, 0
for name in names:
    b = h0[name]["data_offsets"][1] - h0[name]["data_offsets"][0]
    header[name] = {"dtype": "F32", "shape": h0[name]["shape"], "data_offsets": [off, off + b]}
    off += b
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for name in names:
        acc = None
        for (n, hd), m in zip(heads, maps):
            a, b = hd[name]["data_offsets"]
            x = m[8 + n + a: 8 + n + b].view(np.float32)
            acc = x.astype(np.float32, copy=True) if acc is None else np.add(acc, x, out=acc)
        acc /= np.float32(len(ins))
        f.write(acc.tobytes())
PYEOF

size=$(stat -c %s "$dir/m0.safetensors")
pt_size=$(stat -c %s "$dir/model.pt")
largest_kib=$((32768 * 1024 * 4 / 1024))
cat "$dir"/m*.safetensors "$dir/model.pt" >/dev/null  # warm the page cache
sync
read_gbs=$(page_cache_read_gbs "$dir/m0.safetensors")
echo "inputs: 3 x $(awk -v s="$size" 'BEGIN{printf "%.2f GiB", s/2^30}') safetensors, $(awk -v s="$pt_size" 'BEGIN{printf "%.2f GiB", s/2^30}') .pt; largest tensor 128 MiB; LOCO_FSYNC=$LOCO_FSYNC; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "page-cache read bandwidth (same run): $read_gbs GB/s"
printf '%-38s %8s %16s %8s %10s %10s\n' step "GB/s" "min-max" "of read" "peak MiB" "bound MiB"

run() {  # label, input bytes, inputs held at once, output to remove before each run, command...
  local label=$1 bytes=$2 held=$3 target=$4; shift 4
  repeat_timed "$reps" "$target" "$@"
  awk -v s="$bytes" -v med="$MED" -v mn="$MN" -v mx="$MX" -v r="$read_gbs" -v k="$KIB" -v b="$largest_kib" -v h="$held" -v l="$label" \
    'BEGIN{printf "%-38s %8.2f %7.2f-%-8.2f %7.0f%% %10.0f %10.0f\n", l, s/med/1e9, s/mx/1e9, s/mn/1e9, 100*s/med/1e9/r, k/1024, (h*b+65536)/1024}'
}

run "convert .pt -> h5" "$pt_size" 1 "$dir/pt.h5" "$LOCO_BIN/loco-convert" -q "$dir/model.pt" "$dir/pt.h5"
run "convert .pt -> safetensors" "$pt_size" 1 "$dir/pt.safetensors" "$LOCO_BIN/loco-convert" -q "$dir/model.pt" "$dir/pt.safetensors"
run "merge linear, 3 inputs (loco)" "$((3 * size))" 3 "$dir/lin.safetensors" \
  "$LOCO_BIN/loco-merge" -q --method linear -o "$dir/lin.safetensors" "$dir/m0.safetensors" "$dir/m1.safetensors" "$dir/m2.safetensors"
run "merge linear, 3 inputs (numpy)" "$((3 * size))" 3 "$dir/np.safetensors" \
  "$PY" "$dir/np_merge.py" "$dir/np.safetensors" "$dir/m0.safetensors" "$dir/m1.safetensors" "$dir/m2.safetensors"
run "merge ties d=0.5, base + 2 (loco)" "$((3 * size))" 3 "$dir/ties.safetensors" \
  "$LOCO_BIN/loco-merge" -q --method ties --density 0.5 --base "$dir/m0.safetensors" -o "$dir/ties.safetensors" \
  "$dir/m1.safetensors" "$dir/m2.safetensors"
"$LOCO_BIN/loco-inspect" --diff "$dir/model.pt" "$dir/pt.h5" | head -1
# Both sum the three inputs in float32 in the same order and divide once: within one rounding of
# the division and two of the sums, |err| <= 3 * 2^-24 * (|a| + |b| + |c|) / 3, below 1e-6 relative here.
"$LOCO_BIN/loco-inspect" --diff --rtol 1e-6 --atol 1e-6 "$dir/lin.safetensors" "$dir/np.safetensors" | head -1
