#!/usr/bin/env bash
# Benchmark of issue 4: loco-aggregate of 8 dense deltas of 25,165,824 float32 (one 6144x4096 tensor,
# as bench-ref's agg_bench.py) with outer Nesterov, against the h5py+numpy peer (bench-ref's h5_mean
# loop: read_direct each file, np.add into an accumulator, scale) run here on the same files. Reports
# median and min-max wall time, GB/s of delta bytes, ratio to the peer and to the page-cache read
# bandwidth measured in the same run, and peak memory (/usr/bin/time) for 2, 4 and 8 deltas.
# Targets: >= 1.8x the peer, >= 75% of page-cache read bandwidth, memory flat in N.
# Usage: bench/aggregate.sh [REPEATS=5] [DIR=/tmp/loco-bench-aggregate]
set -euo pipefail
source "$(dirname "$0")/common.sh"
reps=${1:-5}
dir=${2:-/tmp/loco-bench-aggregate}
mkdir -p "$dir"
N=8
ELEMS=$((6144 * 4096))

# The global model (round 0, no state) and 8 deltas in the loco layout, base_checksum from loco-inspect.
"$PY" - "$dir" "$N" <<'PYEOF'
import json, sys, h5py, numpy as np
d, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
cfg = json.dumps({"type": "bench", "d": 6144})
def write(path, kind, x, attrs):
    with h5py.File(path, "w", track_order=True) as f:
        f.attrs["loco_format"] = "loco"; f.attrs["loco_version"] = np.int64(1); f.attrs["kind"] = kind
        f.attrs["model_config"] = cfg
        for k, v in attrs.items(): f.attrs[k] = v
        f.create_group("tensors", track_order=True).create_dataset("w", data=x)  # contiguous f32
write(f"{d}/g0.h5", "model", rng.standard_normal((6144, 4096), dtype=np.float32), {"round": np.int64(0)})
for i in range(n):
    write(f"{d}/d{i}.h5", "delta", rng.standard_normal((6144, 4096), dtype=np.float32),
          {"round": np.int64(0), "worker": np.int64(i), "samples": np.int64(1000), "base_checksum": "pending"})
PYEOF
base=$("$LOCO_BIN/loco-inspect" --checksum --json "$dir/g0.h5" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tensors_checksum"])')
for i in $(seq 0 $((N - 1))); do
  "$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'a'); f.attrs['base_checksum']=sys.argv[2]" "$dir/d$i.h5" "$base"
done
cat "$dir"/*.h5 > /dev/null  # warm the page cache
sync
read_gbs=$(page_cache_read_gbs "$dir/d0.h5")
delta_bytes=$((N * ELEMS * 4))
echo "inputs: model + $N deltas of $ELEMS float32 ($(awk -v b=$delta_bytes 'BEGIN{printf "%.0f MB", b/1e6}') of deltas) in $dir"
echo "page-cache read bandwidth (same run): $read_gbs GB/s; threads: $(nproc)"

peer() {  # the bench-ref h5_mean loop on the loco files (dataset /tensors/w)
  "$PY" - "$dir" "$1" <<'PYEOF'
import sys, h5py, numpy as np
d, n = sys.argv[1], int(sys.argv[2])
acc = np.empty((6144, 4096), np.float32); buf = np.empty_like(acc)
for i in range(n):
    with h5py.File(f"{d}/d{i}.h5", "r") as h:
        h["tensors/w"].read_direct(acc if i == 0 else buf)
    if i: np.add(acc, buf, out=acc)
np.multiply(acc, 1.0 / n, out=acc)
PYEOF
}

peer_med=""
printf '%-44s %9s %17s %9s %8s %8s %9s\n' run "median s" "min-max s" "GB/s" "x peer" "of read" "peak MiB"
run() {  # label, ndeltas, output to remove before each run (or -), command...
  local label=$1 n=$2 target=$3; shift 3
  repeat_timed "$reps" "$target" "$@"
  local med=$MED mn=$MN mx=$MX kib=$KIB
  [ -z "$peer_med" ] && peer_med=$med
  awk -v b=$((n * ELEMS * 4)) -v med="$med" -v mn="$mn" -v mx="$mx" -v r="$read_gbs" -v k="$kib" -v p="$peer_med" -v l="$label" \
    'BEGIN{printf "%-44s %9.3f %8.3f-%-8.3f %9.2f %7.2fx %7.0f%% %9.0f\n", l, med, mn, mx, b/med/1e9, p/med, 100*b/med/1e9/r, k/1024}'
}

export -f peer
export dir PY
run "h5py+numpy peer, mean of 8 (reads only)" 8 - bash -c 'peer 8'
deltas() { for i in $(seq 0 $(($1 - 1))); do echo "$dir/d$i.h5"; done; }
agg=("$LOCO_BIN/loco-aggregate" -q --model "$dir/g0.h5" --outer nesterov:lr=0.7,momentum=0.9)
run "loco-aggregate nesterov, 8 deltas" 8 "$dir/g1.h5" "${agg[@]}" -o "$dir/g1.h5" $(deltas 8)
run "loco-aggregate nesterov, 8 deltas, LOCO_FSYNC=0" 8 "$dir/g1.h5" env LOCO_FSYNC=0 "${agg[@]}" -o "$dir/g1.h5" $(deltas 8)
run "loco-aggregate nesterov, 4 deltas, LOCO_FSYNC=0" 4 "$dir/g1.h5" env LOCO_FSYNC=0 "${agg[@]}" -o "$dir/g1.h5" $(deltas 4)
run "loco-aggregate nesterov, 2 deltas, LOCO_FSYNC=0" 2 "$dir/g1.h5" env LOCO_FSYNC=0 "${agg[@]}" -o "$dir/g1.h5" $(deltas 2)
# Where the time goes (one run, from the JSON summary): open = checksum of the model; reduce = the
# streaming pass (deltas, model and state read, new model and state written); commit = close + rename.
rm -f "$dir/g1.h5"
sync
LOCO_FSYNC=0 "${agg[@]}" -o "$dir/g1.h5" --json $(deltas 8) >"$dir/summary.json"
"$PY" - "$dir/summary.json" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1])); t = s["seconds"]
print("phases (8 deltas, LOCO_FSYNC=0): open %.3f s, reduce %.3f s, commit %.3f s, in-process total %.3f s; "
      "%.2f GB read in all; reduce pass %.2f GB/s of deltas" % (t["open"], t["reduce"], t["commit"], s["elapsed_seconds"],
      s["bytes_read"] / 1e9, s["delta_bytes_read"] / t["reduce"] / 1e9))
PYEOF
rm -rf "$dir"
