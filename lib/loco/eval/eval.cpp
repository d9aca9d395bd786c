// Evaluation and sampling.
#include "loco/eval/eval.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <nlohmann/json.hpp>

#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace loco::eval {

model::LossStats evaluate(model::Model& net, const TensorSet& params, const data::DataFile& data, std::int64_t batch) {
  if (batch < 1) throw_error(ErrorKind::Usage, "evaluation batch must be at least 1");
  model::LossStats total;
  if (!data.tokens) {
    const auto& r = data.rows;
    for (std::int64_t i = 0; i < r.n; i += batch) {
      const std::int64_t n = std::min(batch, r.n - i);
      total += net.evaluate(params, model::Batch::classification(
                                        std::span<const float>(r.x.data() + i * r.d, static_cast<std::size_t>(n * r.d)),
                                        std::span<const std::int32_t>(r.y.data() + i, static_cast<std::size_t>(n))));
    }
    return total;
  }
  const auto& t = data.stream.tokens;
  const std::int64_t ctx = net.config().ctx;
  const auto len = static_cast<std::int64_t>(t.size());
  if (len < 2) throw_error(ErrorKind::BadInput, "{}: {} tokens, at least 2 are needed to predict one", data.path, len);
  const std::int64_t full = (len - 1) / ctx;  // windows of ctx + 1 tokens starting at w·ctx
  std::vector<std::uint8_t> buf;
  for (std::int64_t w = 0; w < full; w += batch) {
    const std::int64_t n = std::min(batch, full - w);
    buf.resize(static_cast<std::size_t>(n * (ctx + 1)));
    for (std::int64_t k = 0; k < n; ++k) std::copy_n(t.begin() + (w + k) * ctx, ctx + 1, buf.begin() + k * (ctx + 1));
    total += net.evaluate(params, model::Batch::tokens(std::span<const std::uint8_t>(buf), ctx));
  }
  const std::int64_t rest = (len - 1) - full * ctx;  // predictions left for a shorter last window
  if (rest > 0) {
    buf.assign(t.begin() + full * ctx, t.end());
    total += net.evaluate(params, model::Batch::tokens(std::span<const std::uint8_t>(buf), rest));
  }
  return total;
}

nlohmann::json metrics_json(const model::ModelConfig& config, const model::LossStats& s, const std::string& model_path,
                            const std::string& data_path) {
  nlohmann::json j;
  j["model"] = model_path;
  j["data"] = data_path;
  j["loss"] = s.mean_loss();
  j["count"] = s.count;
  if (config.is_classifier()) {
    j["accuracy"] = s.accuracy();
  } else {
    j["perplexity"] = std::exp(s.mean_loss());
    j["bits_per_byte"] = s.mean_loss() / std::numbers::ln2;
    j["accuracy"] = s.accuracy();
  }
  return j;
}

std::vector<std::int32_t> sample(model::Model& net, const TensorSet& params, std::vector<std::int32_t> tokens,
                                 std::int64_t n, double temperature, std::uint64_t seed) {
  if (tokens.empty()) throw_error(ErrorKind::Usage, "sampling needs a prompt of at least one byte");
  if (!(temperature >= 0)) throw_error(ErrorKind::Usage, "temperature must be >= 0");
  std::vector<float> logits(static_cast<std::size_t>(net.config().vocab));
  std::vector<double> p(logits.size());
  Rng rng(seed, {0x73616d706c65ull});  // "sample"
  for (std::int64_t i = 0; i < n; ++i) {
    net.next_token_logits(params, tokens, logits);
    std::int32_t next = 0;
    if (temperature == 0) {
      next = static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    } else {
      const float mx = *std::max_element(logits.begin(), logits.end());
      double z = 0;
      for (std::size_t k = 0; k < logits.size(); ++k) z += p[k] = std::exp((logits[k] - mx) / temperature);
      double u = rng.uniform_double() * z;
      next = static_cast<std::int32_t>(logits.size() - 1);
      for (std::size_t k = 0; k < p.size(); ++k) {
        if (u < p[k]) {
          next = static_cast<std::int32_t>(k);
          break;
        }
        u -= p[k];
      }
    }
    tokens.push_back(next);
  }
  return tokens;
}

}  // namespace loco::eval
