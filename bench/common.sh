# Shared helpers for bench/*.sh: timing with repeats, peak memory, page-cache read bandwidth.
# Source it; it expects LOCO_BIN (the built tools) to be set or finds build/bin.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCO_BIN=${LOCO_BIN:-$bench_root/build/bin}
PY=/usr/bin/python3

# median_min_max "v1 v2 ...": prints "median min max"
median_min_max() {
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.4f %.4f %.4f\n", m, a[1], a[NR]}'
}

# time_cmd CMD...: prints wall seconds and peak RSS in KiB ("secs kib"), fails if CMD fails.
time_cmd() {
  local log
  log=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$log" "$@" >/dev/null
  cat "$log"
  rm -f "$log"
}

# repeat_timed REPS TARGET CMD...: runs CMD REPS times and sets MED, MN, MX (wall seconds) and
# KIB (largest peak RSS). Before each run, untimed: TARGET (unless "-") is removed, since freeing a
# large old output is the file system's cost, not the tool's, and dirty pages are flushed so the
# writeback of one run does not throttle the next.
repeat_timed() {
  local reps=$1 target=$2 secs=() out
  shift 2
  KIB=0
  for _ in $(seq "$reps"); do
    [[ $target == - ]] || rm -f "$target"
    sync
    out=$(time_cmd "$@")
    secs+=("${out% *}")
    KIB=$(( ${out#* } > KIB ? ${out#* } : KIB ))
  done
  read -r MED MN MX <<<"$(median_min_max "${secs[@]}")"
}

# page_cache_read_gbs FILE: GB/s of a warm sequential read with 8 MiB reads (as bench-ref's fileio.py).
page_cache_read_gbs() {
  "$PY" - "$1" <<'PYEOF'
import os, sys, time
path = sys.argv[1]; CH = 8 << 20; mv = memoryview(bytearray(CH)); best = []
for _ in range(4):
    t0 = time.perf_counter(); n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            r = f.readinto(mv)
            if not r: break
            n += r
    best.append(n / (time.perf_counter() - t0) / 1e9)
best.sort(); print(f"{(best[1] + best[2]) / 2:.3f}")
PYEOF
}

# page_cache_write_gbs FILE BYTES: GB/s of writing a new file of BYTES with 8 MiB writes, no fsync
# (median of 3, each after a sync so earlier dirty pages do not throttle it). Removes FILE.
page_cache_write_gbs() {
  local f=$1 bytes=$2 r=()
  for _ in 1 2 3; do
    rm -f "$f"; sync
    r+=("$("$PY" - "$f" "$bytes" <<'PYEOF'
import os, sys, time
path, n = sys.argv[1], int(sys.argv[2]); CH = 8 << 20; buf = os.urandom(CH)
t0 = time.perf_counter(); fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644); done = 0
while done < n:
    done += os.write(fd, buf[: min(CH, n - done)])
os.close(fd); print(f"{n / (time.perf_counter() - t0) / 1e9:.3f}")
PYEOF
)")
  done
  rm -f "$f"
  median_min_max "${r[@]}" | cut -d' ' -f1
}
