// Codec kernel benchmark of issue 5: encode and decode times of loco's codecs on a tensor held in
// memory, next to a memory copy of the same tensor in the same process (the bandwidth reference),
// printed as one JSON object per line for bench/compress.sh. Input: x ~ N(0, 1) from Philox.
// Usage: loco-bench-codecs [--reps N] [--numel N] [SPEC...]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "loco/compress/codec.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"
#include "loco/core/tensor.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Stats {
  double median, min, max;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return {n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.front(), v.back()};
}

template <typename F>
Stats timed(int reps, F&& f) {
  f();  // warm-up: page faults of the first output, caches
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    f();
    t.push_back(seconds_since(t0));
  }
  return stats(std::move(t));
}

void emit(const std::string& name, const std::string& op, const Stats& s, std::int64_t bytes_in,
          const std::string& extra = "") {
  std::printf(
      "%s\n",
      fmt::format(R"({{"name":"{}","op":"{}","median_ms":{:.3f},"min_ms":{:.3f},"max_ms":{:.3f},"gbs_in":{:.3f}{}}})",
                  name, op, s.median * 1e3, s.min * 1e3, s.max * 1e3, static_cast<double>(bytes_in) / s.median / 1e9,
                  extra)
          .c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 7;
  std::int64_t numel = 6144 * 4096;
  std::vector<std::string> specs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
    else if (a == "--numel" && i + 1 < argc) numel = std::stoll(argv[++i]);
    else specs.push_back(a);
  }
  try {
    loco::Tensor x = loco::Tensor::uninitialized({numel}, loco::DType::F32);
    loco::fill_normal(x.f32(), 0.0f, 1.0f, 0, 0);
    const std::int64_t bytes = numel * 4;

    // The bandwidth reference: a copy of x into a buffer touched beforehand, split over as many
    // threads as the codecs use (LOCO_THREADS, else the hardware's).
    const char* env = std::getenv("LOCO_THREADS");
    const int threads = std::max(1, env ? std::atoi(env) : static_cast<int>(std::thread::hardware_concurrency()));
    std::vector<float> dst(static_cast<std::size_t>(numel), 0.0f);
    const float* src = x.f32().data();
    emit("memcpy", "copy",
         timed(reps,
               [&] {
                 std::vector<std::thread> pool;
                 const std::int64_t part = (numel + threads - 1) / threads;
                 for (int t = 0; t < threads; ++t) {
                   const std::int64_t b = std::min(numel, t * part), e = std::min(numel, b + part);
                   pool.emplace_back(
                       [&, b, e] { std::memcpy(dst.data() + b, src + b, static_cast<std::size_t>(e - b) * 4); });
                 }
                 for (auto& th : pool) th.join();
               }),
         bytes, fmt::format(R"(,"threads":{})", threads));

    for (const std::string& spec : specs) {
      const loco::compress::Codec codec = loco::compress::Codec::parse(spec);
      const bool square = spec.rfind("powersgd", 0) == 0;  // PowerSGD on a 4096 x 4096 matrix
      loco::Tensor in = square ? loco::Tensor::uninitialized({4096, 4096}, loco::DType::F32) : loco::Tensor();
      if (square) std::memcpy(in.f32().data(), x.f32().data(), std::size_t{4096} * 4096 * 4);
      const loco::Tensor& t = square ? in : x;
      const std::int64_t tbytes = t.numel() * 4;
      const loco::compress::RandomKey key = loco::compress::random_key(1, 0, 0, "x");
      loco::compress::Encoded e = codec.encode(t, key);
      const std::string extra = fmt::format(R"(,"payload_bytes":{},"numel":{})", e.payload_bytes(), t.numel());
      emit(spec, "encode", timed(reps, [&] { e = codec.encode(t, key); }), tbytes, extra);
      emit(spec, "decode", timed(reps, [&] { loco::Tensor y = loco::compress::decode(e); }), tbytes, extra);
    }
  } catch (const loco::Error& e) {
    std::fprintf(stderr, "loco-bench-codecs: %s\n", e.what());
    return 1;
  }
  return 0;
}
