#!/usr/bin/env bash
# Benchmark of issue 2: loco-convert of a >= 1 GiB safetensors file to loco HDF5 and back, and
# loco-inspect --checksum of it, as GB/s against the page-cache read bandwidth measured in the same
# run, with peak memory (/usr/bin/time). Targets: >= 50% of page-cache read bandwidth; peak memory
# <= largest tensor + 64 MiB.
# Usage: bench/convert.sh [REPEATS=5] [DIR=/tmp/loco-bench-convert]
set -euo pipefail
source "$(dirname "$0")/common.sh"
reps=${1:-5}
dir=${2:-/tmp/loco-bench-convert}
mkdir -p "$dir"
st=$dir/model.safetensors

# A GPT-like checkpoint (bench/peers/layout.py): 1.0 GiB in 98 tensors, largest 128 MiB.
"$PY" - "$st" "$bench_root/bench/peers" <<'PYEOF'
import json, struct, sys, numpy as np
path = sys.argv[1]
sys.path.insert(0, sys.argv[-1])
from layout import gpt_shapes
shapes = gpt_shapes()
rng = np.random.default_rng(0)
header, off = {}, 0
for name in sorted(shapes):
    n = int(np.prod(shapes[name])) * 4
    header[name] = {"dtype": "F32", "shape": list(shapes[name]), "data_offsets": [off, off + n]}
    off += n
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for name in sorted(shapes):
        f.write(rng.standard_normal(shapes[name], dtype=np.float32).tobytes())
PYEOF
size=$(stat -c %s "$st")
largest_kib=$((32768 * 1024 * 4 / 1024))
cat "$st" > /dev/null  # warm the page cache
sync
read_gbs=$(page_cache_read_gbs "$st")
write_gbs=$(page_cache_write_gbs "$dir/write-probe.bin" "$size")
echo "file: $st, $(awk -v s="$size" 'BEGIN{printf "%.2f GiB", s/2^30}'), largest tensor 128 MiB"
echo "page-cache read bandwidth (same run): $read_gbs GB/s; buffered write of a new file of the same size: $write_gbs GB/s"
printf '%-34s %10s %18s %8s %9s %12s %10s\n' step "GB/s" "min-max" "of read" "of write" "peak MiB" "bound MiB"

run() {  # label, output to remove before each run (or -), command...
  local label=$1 target=$2; shift 2
  repeat_timed "$reps" "$target" "$@"
  local med=$MED mn=$MN mx=$MX kib=$KIB
  awk -v s="$size" -v med="$med" -v mn="$mn" -v mx="$mx" -v r="$read_gbs" -v w="$write_gbs" -v k="$kib" -v b="$largest_kib" -v l="$label" \
    'BEGIN{printf "%-34s %10.2f %8.2f-%-9.2f %7.0f%% %8.0f%% %12.0f %10.0f\n", l, s/med/1e9, s/mx/1e9, s/mn/1e9, 100*s/med/1e9/r, 100*s/med/1e9/w, k/1024, (b+65536)/1024}'
}

run "convert safetensors -> h5" "$dir/model.h5" "$LOCO_BIN/loco-convert" -q "$st" "$dir/model.h5"
run "convert h5 -> safetensors" "$dir/back.safetensors" "$LOCO_BIN/loco-convert" -q "$dir/model.h5" "$dir/back.safetensors"
# Without the fsync of atomic writes (LOCO_FSYNC=0): what the tool itself costs, disk aside.
run "convert st -> h5, LOCO_FSYNC=0" "$dir/model.h5" env LOCO_FSYNC=0 "$LOCO_BIN/loco-convert" -q "$st" "$dir/model.h5"
run "convert h5 -> st, LOCO_FSYNC=0" "$dir/back.safetensors" env LOCO_FSYNC=0 "$LOCO_BIN/loco-convert" -q "$dir/model.h5" "$dir/back.safetensors"
run "inspect --checksum (safetensors)" - "$LOCO_BIN/loco-inspect" --checksum "$st"
run "inspect --checksum (h5)" - "$LOCO_BIN/loco-inspect" --checksum "$dir/model.h5"
cmp -s "$st" "$dir/back.safetensors" && echo "round trip: byte-identical safetensors" || echo "round trip: files differ (metadata)"
"$LOCO_BIN/loco-inspect" --diff "$st" "$dir/back.safetensors" | head -1
rm -rf "$dir"
