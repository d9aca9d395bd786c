#!/usr/bin/env bash
# Builds loco's libFuzzer targets with clang in build-fuzz and runs each for a bounded time on a
# seed corpus generated here. Inputs of up to 256 KB (-max_len), so that nesting deep enough to
# matter (a .pt nested 30,000 levels is 120 KB) is reachable. Each target runs in libFuzzer's fork
# mode: a crash, timeout or out-of-memory is recorded and the campaign goes on. Every input that
# crashed, timed out or ran out of memory is copied to tests/data/fuzz/<target>/ as a regression
# input (the loco-inspect CLI cases read each one and expect exit 0 or 4).
#
# Usage: bench/fuzz.sh [-t SECONDS] [FUZZER...]
#   -t SECONDS   run time per fuzzer (default 60, or $LOCO_FUZZ_SECONDS)
#   FUZZER...    names to run (default: every target the build produces, e.g. fuzz_safetensors)
# Environment: LOCO_FUZZ_BUILD (build folder, default <repo>/build-fuzz), JOBS (build jobs, default 2).
# Exit status: 0 when every fuzzer ran clean, 1 when one found a crash, timeout or out-of-memory
# (artifacts in <build>/artifacts, copies in tests/data/fuzz/<target>/).
set -euo pipefail
export LC_ALL=C

root=$(cd "$(dirname "$0")/.." && pwd)
build=${LOCO_FUZZ_BUILD:-$root/build-fuzz}
seconds=${LOCO_FUZZ_SECONDS:-60}
while getopts "t:h" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    h) sed -n '2,16p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DLOCO_FUZZ=ON -DLOCO_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target fuzzers -j "${JOBS:-2}"

# --- seed corpora ------------------------------------------------------------------------------

# st_seed FILE JSON DATA_BYTES: a safetensors file with JSON padded to 8 bytes and DATA_BYTES bytes
# of data (a repeating pattern). JSON must be ASCII.
st_seed() {
  local file=$1 json=$2 nbytes=$3
  local pad=$(((8 - ${#json} % 8) % 8))
  json+=$(printf '%*s' "$pad" '')
  local n=${#json} i prefix=''
  for i in 0 1 2 3 4 5 6 7; do prefix+=$(printf '\\%03o' $(((n >> (8 * i)) & 255))); done
  {
    printf "$prefix"
    printf '%s' "$json"
    if ((nbytes > 0)); then head -c "$nbytes" /dev/zero | tr '\0' '\075'; fi
  } >"$file"
}

seed_fuzz_safetensors() {
  local dir=$1
  st_seed "$dir/empty" '{}' 0
  st_seed "$dir/meta" '{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}' 16
  st_seed "$dir/scalar_and_empty" '{"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"F16","shape":[3,0],"data_offsets":[8,8]}}' 8
  st_seed "$dir/mixed" '{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[16,28]},"c":{"dtype":"U8","shape":[4],"data_offsets":[28,32]},"d":{"dtype":"BOOL","shape":[2],"data_offsets":[32,34]}}' 34
  st_seed "$dir/all_ints" '{"i8":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},"u16":{"dtype":"U16","shape":[1],"data_offsets":[1,3]},"i16":{"dtype":"I16","shape":[1],"data_offsets":[3,5]},"u32":{"dtype":"U32","shape":[1],"data_offsets":[5,9]},"i32":{"dtype":"I32","shape":[1],"data_offsets":[9,13]},"u64":{"dtype":"U64","shape":[1],"data_offsets":[13,21]}}' 21
  st_seed "$dir/f8" '{"q":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}' 4
  st_seed "$dir/gap" '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}' 12
}

seed_fuzz_loco_file() {
  local dir=$1
  /usr/bin/python3 - "$dir" <<'PYEOF'
import sys, h5py, numpy as np
d = sys.argv[1]
def loco(name, kind="model", **groups):
    with h5py.File(f"{d}/{name}", "w", track_order=True) as f:
        f.attrs.update(loco_format="loco", loco_version=1, kind=kind, model_config='{"arch":"logreg","features":2,"classes":2}')
        for g, tensors in groups.items():
            grp = f.require_group(g)
            for n, v in tensors.items():
                grp[n] = v
loco("model.h5", tensors={"linear.weight": np.ones((2, 2), np.float32), "linear.bias": np.zeros(2, np.float32)})
loco("dtypes.h5", tensors={"f16": np.arange(4, dtype=np.float16), "i64": np.arange(3), "b": np.array([True, False]),
                           "s": np.float64(2.5)})
loco("state.h5", kind="state", **{"state/exp_avg": {"w": np.zeros((3, 1), np.float32)}})
loco("data.h5", kind="data", data={"tokens": np.frombuffer(b"hello world", np.uint8)})
PYEOF
}

# Valid GGUF files of every type loco reads (quantized ones included) and metadata of every value
# type, plus each hostile header of tests/cli/hostile.py (but the 1.2 MB deep array: past -max_len).
seed_fuzz_gguf() {
  local dir=$1
  /usr/bin/python3 - "$dir" "$root/tests/cli" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[2])
import numpy as np
import gguf_spec as g
import hostile
d = sys.argv[1]
a = np.arange(64, dtype=np.float32).reshape(2, 32) / 8
ts = [g.Tensor.of("f32", a), g.Tensor.of("f16", a.astype(np.float16)), g.Tensor.of("i8", np.arange(3, dtype=np.int8)),
      g.Tensor.of("scalar", np.array(1.5, np.float64)), g.Tensor("bf16", "BF16", (2,), b"\x80\x3f\x00\x40"),
      g.Tensor("q8", "Q8_0", (32,), g.q8_0(0.5, np.arange(-16, 16))),
      g.Tensor("q40", "Q4_0", (2, 32), g.q4_0(0.25, np.arange(32) % 16) * 2),
      g.Tensor("q41", "Q4_1", (64,), g.q4_1(2.0, -1.0, np.arange(32) % 16) * 2)]
kvs = [("general.architecture", g.STR, "llama"), ("general.alignment", g.U32, 64), ("loco.kind", g.STR, "model"),
       ("loco.round", g.I64, 3), ("t.f32", g.F32, 0.1), ("t.bool", g.BOOL, 1),
       ("tokens", g.ARR, (g.STR, ["a", "b"])), ("nested", g.ARR, (g.ARR, [(g.U8, [1]), (g.F64, [2.5])]))]
open(f"{d}/all.gguf", "wb").write(g.gguf_bytes(ts, kvs, alignment=64))
open(f"{d}/v2.gguf", "wb").write(g.gguf_bytes(ts[:2], version=2))
open(f"{d}/empty.gguf", "wb").write(g.gguf_bytes([]))
for name, make in hostile.GGUF_HOSTILE.items():
    if name != "deep-array":
        open(f"{d}/hostile-{name}.gguf", "wb").write(make())
PYEOF
}

# --- run ---------------------------------------------------------------------------------------

if (($# == 0)); then
  mapfile -t fuzzers < <(find "$build/fuzz" -maxdepth 1 -type f -executable -name 'fuzz_*' -printf '%f\n' | sort)
else
  fuzzers=("$@")
fi
((${#fuzzers[@]} > 0)) || { echo "fuzz.sh: no fuzz targets in $build/fuzz" >&2; exit 2; }

mkdir -p "$build/artifacts"
failed=()
for name in "${fuzzers[@]}"; do
  exe=$build/fuzz/$name
  [[ -x $exe ]] || { echo "fuzz.sh: no fuzzer $name in $build/fuzz" >&2; exit 2; }
  corpus=$build/corpus/$name
  mkdir -p "$corpus"
  if declare -F "seed_$name" >/dev/null; then "seed_$name" "$corpus"; fi
  rm -f "$build/artifacts/$name-"*
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -artifact_prefix="$build/artifacts/$name-")
  dict=$root/tests/fuzz/${name#fuzz_}.dict
  [[ -f $dict ]] && args+=(-dict="$dict")
  echo "== $name: ${seconds}s, corpus $corpus ($(find "$corpus" -type f | wc -l) inputs)"
  # Full unwinding at malloc: libhdf5 has no frame pointers, and the suppressions name its frames.
  if ! ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:fast_unwind_on_malloc=0} LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/fuzz/lsan.supp} \
      "$exe" "${args[@]}" "$corpus" 2>"$build/$name.log"; then
    failed+=("$name")
    tail -n 40 "$build/$name.log" >&2
  fi
  # Fork mode goes on after a finding; the artifacts tell what it found.
  found=("$build/artifacts/$name-"*)
  if [[ -e ${found[0]} ]]; then
    keep=$root/tests/data/fuzz/$name
    mkdir -p "$keep"
    cp "${found[@]}" "$keep/"
    echo "fuzz.sh: $name: ${#found[@]} finding(s), kept in $keep" >&2
    [[ " ${failed[*]} " == *" $name "* ]] || failed+=("$name")
  fi
  grep -E '^(stat::|Done|#[0-9]+.*DONE|INFO: fuzzed for)' "$build/$name.log" || true
done

if ((${#failed[@]} > 0)); then
  echo "fuzz.sh: findings in: ${failed[*]} (see $build/artifacts, tests/data/fuzz and $build/<name>.log)" >&2
  exit 1
fi
echo "fuzz.sh: ${#fuzzers[@]} fuzzer(s) ran ${seconds}s each without a crash"
