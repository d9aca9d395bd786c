// Minibatch index and window samplers keyed by (seed, worker, round, step).
#include "loco/data/batch.hpp"

#include <cstring>
#include <numeric>

#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"
#include "loco/data/random.hpp"

namespace loco::data {

namespace {
constexpr std::uint64_t kBatch = 0x6261746368ull;     // "batch"
constexpr std::uint64_t kEpoch = 0x65706f6368ull;     // "epoch"
constexpr std::uint64_t kWindow = 0x77696e646f77ull;  // "window"
}  // namespace

BatchSampler::BatchSampler(std::int64_t examples, std::int64_t batch, SampleMode mode, std::uint64_t seed,
                           std::uint64_t worker, std::uint64_t round)
    : n_(examples), b_(batch), mode_(mode), seed_(seed), worker_(worker), round_(round) {
  if (examples < 1) throw_error(ErrorKind::Usage, "batch sampler: {} examples; need at least 1", examples);
  if (batch < 1) throw_error(ErrorKind::Usage, "batch sampler: batch size {}; need at least 1", batch);
}

const std::vector<std::int64_t>& BatchSampler::epoch(std::int64_t e) {
  if (e != cached_epoch_) {
    Rng rng(seed_, {kEpoch, worker_, round_, static_cast<std::uint64_t>(e)});
    perm_.resize(static_cast<std::size_t>(n_));
    std::iota(perm_.begin(), perm_.end(), std::int64_t{0});
    shuffle(perm_, rng);
    cached_epoch_ = e;
  }
  return perm_;
}

void BatchSampler::indices(std::int64_t step, std::span<std::int64_t> out) {
  if (step < 0) throw_error(ErrorKind::Usage, "batch sampler: step {} is negative", step);
  if (static_cast<std::int64_t>(out.size()) != b_)
    throw_error(ErrorKind::Internal, "batch sampler: output holds {} indices, batch is {}", out.size(), b_);
  if (mode_ == SampleMode::Replacement) {
    Rng rng(seed_, {kBatch, worker_, round_, static_cast<std::uint64_t>(step)});
    for (std::int64_t& i : out) i = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(n_)));
    return;
  }
  std::int64_t t = step * b_;
  for (std::int64_t& i : out) {
    i = epoch(t / n_)[static_cast<std::size_t>(t % n_)];
    ++t;
  }
}

std::vector<std::int64_t> BatchSampler::indices(std::int64_t step) {
  std::vector<std::int64_t> out(static_cast<std::size_t>(b_));
  indices(step, out);
  return out;
}

WindowSampler::WindowSampler(std::int64_t tokens, std::int64_t ctx, std::int64_t batch, std::uint64_t seed,
                             std::uint64_t worker, std::uint64_t round)
    : tokens_(tokens), ctx_(ctx), b_(batch), seed_(seed), worker_(worker), round_(round) {
  if (ctx < 1) throw_error(ErrorKind::Usage, "window sampler: context {}; need at least 1", ctx);
  if (batch < 1) throw_error(ErrorKind::Usage, "window sampler: batch size {}; need at least 1", batch);
  if (tokens < ctx + 1)
    throw_error(ErrorKind::Usage, "window sampler: {} tokens cannot hold one window of ctx + 1 = {}", tokens, ctx + 1);
}

void WindowSampler::offsets(std::int64_t step, std::span<std::int64_t> out) const {
  if (step < 0) throw_error(ErrorKind::Usage, "window sampler: step {} is negative", step);
  if (static_cast<std::int64_t>(out.size()) != b_)
    throw_error(ErrorKind::Internal, "window sampler: output holds {} offsets, batch is {}", out.size(), b_);
  Rng rng(seed_, {kWindow, worker_, round_, static_cast<std::uint64_t>(step)});
  const auto range = static_cast<std::uint64_t>(tokens_ - ctx_);  // offsets 0 .. tokens − ctx − 1
  for (std::int64_t& o : out) o = static_cast<std::int64_t>(rng.below(range));
}

std::vector<std::int64_t> WindowSampler::offsets(std::int64_t step) const {
  std::vector<std::int64_t> out(static_cast<std::size_t>(b_));
  offsets(step, out);
  return out;
}

void gather_batch(const ClassificationData& data, std::span<const std::int64_t> indices, std::span<float> x,
                  std::span<std::int32_t> y) {
  const auto d = static_cast<std::size_t>(data.d);
  if (x.size() != indices.size() * d || y.size() != indices.size())
    throw_error(ErrorKind::Usage, "gather_batch: buffers of {} features and {} labels for {} examples of {} features",
                x.size(), y.size(), indices.size(), d);
  for (std::size_t k = 0; k < indices.size(); ++k) {
    const std::int64_t i = indices[k];
    if (i < 0 || i >= data.n)
      throw_error(ErrorKind::Usage, "{}: example index {} outside [0, {})", data.source, i, data.n);
    if (d > 0) std::memcpy(x.data() + k * d, data.x.data() + static_cast<std::size_t>(i) * d, d * sizeof(float));
    y[k] = data.y[static_cast<std::size_t>(i)];
  }
}

void gather_windows(const TokenData& data, std::span<const std::int64_t> offsets, std::int64_t ctx,
                    std::span<std::int32_t> out) {
  const auto w = static_cast<std::size_t>(ctx + 1);
  if (ctx < 1 || out.size() != offsets.size() * w)
    throw_error(ErrorKind::Usage, "gather_windows: buffer of {} ids for {} windows of ctx + 1 = {}", out.size(),
                offsets.size(), ctx + 1);
  const auto len = static_cast<std::int64_t>(data.tokens.size());
  for (std::size_t k = 0; k < offsets.size(); ++k) {
    const std::int64_t o = offsets[k];
    if (o < 0 || o + ctx + 1 > len)
      throw_error(ErrorKind::Usage, "{}: window [{}, {}) outside the {} tokens", data.source, o, o + ctx + 1, len);
    const std::uint8_t* src = data.tokens.data() + o;
    std::int32_t* dst = out.data() + k * w;
    for (std::size_t t = 0; t < w; ++t) dst[t] = src[t];
  }
}

}  // namespace loco::data
