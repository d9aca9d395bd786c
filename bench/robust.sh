#!/usr/bin/env bash
# Reducer speed: coordinate median and trimmed mean (beta 0.25) of N x D float32 in memory, loco
# against numpy (np.median / sort-based trimmed mean over axis 0) in the same run, on the same data,
# checking that both give the same result. Usage: bench/robust.sh [N] [D] (default 8 25000000).
# Needs a build (BUILD, default build) with libloco.a; the small driver is compiled here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BUILD=${BUILD:-$root/build}
N=${1:-8}
D=${2:-25000000}
PY=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/bench_robust.cpp" <<'EOF'
// Times loco's in-memory median and trimmed mean of N vectors of D floats read from a raw file.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>
#include "loco/robust/reducer.hpp"
int main(int argc, char** argv) {
  if (argc != 5) return 2;
  const std::size_t n = std::strtoul(argv[1], nullptr, 10), d = std::strtoul(argv[2], nullptr, 10);
  std::vector<std::vector<float>> x(n, std::vector<float>(d));
  std::ifstream f(argv[3], std::ios::binary);
  for (auto& v : x) f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(d * 4));
  for (const std::string spec : {"median", "trimmed-mean:beta=0.25"}) {
    const auto s = loco::robust::parse_reducer_spec(spec);
    const auto t0 = std::chrono::steady_clock::now();
    const auto out = loco::robust::reduce_vectors(s, x);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::ofstream o(std::string(argv[4]) + "." + spec.substr(0, 3) + ".f32", std::ios::binary);
    o.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(d * 4));
    std::printf("loco %s %.4f\n", spec.c_str(), secs);
  }
}
EOF
g++ -std=c++20 -O2 -I"$root/lib" "$work/bench_robust.cpp" "$BUILD/lib/libloco.a" \
  -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5_hl -lhdf5 -ltbb -lfmt -o "$work/bench_robust"
"$PY" - "$N" "$D" "$work" <<'EOF'
import subprocess, sys, time
import numpy as np
n, d, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
x = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)
x.tofile(f"{work}/x.f32")
out = subprocess.run([f"{work}/bench_robust", str(n), str(d), f"{work}/x.f32", f"{work}/out"], check=True,
                     capture_output=True, text=True).stdout
loco = {l.split()[1]: float(l.split()[2]) for l in out.splitlines()}
t0 = time.perf_counter(); med = np.median(x, axis=0); t_med = time.perf_counter() - t0
t = int(np.floor(0.25 * n))
t0 = time.perf_counter(); tm = np.sort(x, axis=0)[t:n - t].mean(axis=0, dtype=np.float64); t_tm = time.perf_counter() - t0
got_med = np.fromfile(f"{work}/out.med.f32", np.float32)
got_tm = np.fromfile(f"{work}/out.tri.f32", np.float32)
assert np.array_equal(got_med, med.astype(np.float32)), "median differs from numpy"
assert np.max(np.abs(got_tm - tm)) < 1e-6, "trimmed mean differs from numpy"
print(f"{n} x {d} float32")
print(f"median        loco {loco['median']:.3f} s  numpy {t_med:.3f} s  ratio {t_med / loco['median']:.1f}x")
print(f"trimmed-mean  loco {loco['trimmed-mean:beta=0.25']:.3f} s  numpy {t_tm:.3f} s  ratio {t_tm / loco['trimmed-mean:beta=0.25']:.1f}x")
EOF
