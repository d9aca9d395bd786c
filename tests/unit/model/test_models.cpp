// Whole models: gradients against finite differences in double, known losses, initialization
// statistics, thread-count invariance, and input validation.
#include <boost/test/unit_test.hpp>

#include <tbb/global_control.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fd.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"
#include "loco/model/model.hpp"

using namespace loco;
using namespace loco::model;
using namespace loco::model::test;
using std::int64_t;

namespace {

// Overwrites every parameter with O(1) random values (LayerNorm weights near 1) so that every
// gradient entry is far from zero and finite differences test something.
void randomize(const Model& model, TensorSet& params, double scale, std::uint64_t stream) {
  for (std::size_t i = 0; i < model.params().size(); ++i) {
    const auto& spec = model.params()[i];
    Tensor& t = params.at(spec.name);
    const auto v = random_vector(static_cast<std::size_t>(t.numel()), -scale, scale, stream * 1000 + i);
    const double offset = spec.role == ParamRole::NormWeight ? 1.0 : 0.0;
    if (t.dtype() == DType::F64) {
      auto d = t.as<double>();
      for (std::size_t k = 0; k < d.size(); ++k) d[k] = offset + v[k];
    } else {
      auto f = t.f32();
      for (std::size_t k = 0; k < f.size(); ++k) f[k] = static_cast<float>(offset + v[k]);
    }
  }
}

// Checks every parameter's gradient against central differences of the mean loss.
void check_model_gradient(Model& model, TensorSet& params, const Batch& batch) {
  TensorSet grads = model.make_params(DType::F64);
  const auto stats = model.forward_backward(params, batch, &grads);
  BOOST_TEST(std::isfinite(stats.loss_sum));
  auto loss = [&] { return model.evaluate(params, batch).mean_loss(); };
  BOOST_TEST(std::abs(loss() - stats.mean_loss()) == 0.0);
  for (std::size_t i = 0; i < model.params().size(); ++i) {
    const auto& name = model.params()[i].name;
    auto x = params.at(name).as<double>();
    auto g = grads.at(name).as<const double>();
    const double max_g = check_gradient(x, g, loss, model.config().canonical_json() + " " + name);
    BOOST_CHECK_MESSAGE(max_g > 1e-4, name << ": gradient is nearly zero (" << max_g << "), the check is vacuous");
  }
}

struct ClassData {
  std::vector<float> x;
  std::vector<std::int32_t> y;
  Batch batch() const { return Batch::classification(x, y); }
};

ClassData class_data(int64_t rows, int64_t features, int64_t classes, std::uint64_t stream) {
  ClassData d;
  Rng rng(7, {stream});
  d.x.resize(static_cast<std::size_t>(rows * features));
  for (auto& v : d.x) v = 2 * rng.uniform() - 1;
  for (int64_t i = 0; i < rows; ++i)
    d.y.push_back(static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(classes))));
  return d;
}

std::vector<std::uint8_t> token_windows(int64_t windows, int64_t seq, int64_t vocab, std::uint64_t stream) {
  Rng rng(9, {stream});
  std::vector<std::uint8_t> t(static_cast<std::size_t>(windows * (seq + 1)));
  for (auto& v : t) v = static_cast<std::uint8_t>(rng.below(static_cast<std::uint64_t>(vocab)));
  return t;
}

bool same_bits(const TensorSet& a, const TensorSet& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto x = a[i].tensor.bytes(), y = b[i].tensor.bytes();
    if (x.size() != y.size() || std::memcmp(x.data(), y.data(), x.size()) != 0) return false;
  }
  return true;
}

double sample_mean(std::span<const float> v) {
  double s = 0;
  for (float x : v) s += x;
  return s / static_cast<double>(v.size());
}
double sample_var(std::span<const float> v) {
  const double m = sample_mean(v);
  double s = 0;
  for (float x : v) s += (x - m) * (x - m);
  return s / static_cast<double>(v.size() - 1);
}

template <typename F>
void expect_error(ErrorKind kind, const std::string& needle, const F& f) {
  try {
    f();
    BOOST_ERROR("no error; expected one mentioning " << needle);
  } catch (const Error& e) {
    BOOST_TEST_MESSAGE(e.what());
    BOOST_TEST((e.kind() == kind), e.what());
    BOOST_CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos,
                        "message \"" << e.what() << "\" does not mention " << needle);
  }
}

const char* kTinyGpt = R"({"arch":"gpt","vocab":11,"ctx":6,"d_model":8,"layers":2,"heads":2,"mlp_ratio":2})";
const char* kTinyGptTied =
    R"({"arch":"gpt","vocab":11,"ctx":6,"d_model":8,"layers":2,"heads":2,"mlp_ratio":2,"tie_embeddings":true})";

}  // namespace

BOOST_AUTO_TEST_SUITE(models_suite)

BOOST_AUTO_TEST_CASE(logreg_with_zero_weights_has_loss_ln_classes) {
  Model model(ModelConfig::parse(R"({"arch":"logreg","features":6,"classes":4})"));
  auto params = model.make_params();
  model.init(params, 1);  // logreg initializes to zeros
  for (const auto& e : params)
    for (float v : e.tensor.f32()) BOOST_REQUIRE(v == 0.0f);
  const auto data = class_data(10, 6, 4, 1);
  auto grads = model.make_params();
  const auto s = model.forward_backward(params, data.batch(), &grads);
  BOOST_TEST(s.count == 10);
  BOOST_TEST(std::abs(s.mean_loss() - std::log(4.0)) < 1e-6);
  // All logits tie, so the first class is the prediction.
  int64_t zeros = 0;
  for (auto y : data.y) zeros += y == 0;
  BOOST_TEST(s.correct == zeros);
  // d/db_c of the mean loss = 1/C − (fraction of labels equal to c).
  const auto db = grads.at("linear.bias").f32();
  for (int c = 0; c < 4; ++c) {
    double frac = 0;
    for (auto y : data.y) frac += (y == c) / 10.0;
    BOOST_TEST(std::abs(db[c] - (0.25 - frac)) < 1e-6);
  }
}

BOOST_AUTO_TEST_CASE(logreg_and_mlp_gradients_finite_differences) {
  for (const char* cfg : {R"({"arch":"logreg","features":6,"classes":4})", R"({"arch":"mlp","sizes":[5,7,6,4]})",
                          R"({"arch":"mlp","sizes":[3,4]})"}) {
    Model model(ModelConfig::parse(cfg));
    auto params = model.make_params(DType::F64);
    randomize(model, params, 0.8, 1);
    const auto data = class_data(9, model.config().input_features(), model.config().num_classes(), 2);
    check_model_gradient(model, params, data.batch());
  }
}

BOOST_AUTO_TEST_CASE(gpt_gradients_finite_differences) {
  for (const char* cfg : {kTinyGpt, kTinyGptTied}) {
    Model model(ModelConfig::parse(cfg));
    auto params = model.make_params(DType::F64);
    randomize(model, params, 0.5, 3);
    // 3 windows of 5 tokens (shorter than ctx = 6).
    const auto tokens = token_windows(3, 5, 11, 4);
    check_model_gradient(model, params, Batch::tokens(tokens, 5));
  }
}

BOOST_AUTO_TEST_CASE(float_model_agrees_with_double) {
  Model model(ModelConfig::parse(kTinyGpt));
  auto p64 = model.make_params(DType::F64);
  randomize(model, p64, 0.5, 5);
  auto p32 = model.make_params(DType::F32);
  randomize(model, p32, 0.5, 5);
  const auto tokens = token_windows(4, 6, 11, 6);
  auto g64 = model.make_params(DType::F64), g32 = model.make_params(DType::F32);
  const auto s64 = model.forward_backward(p64, Batch::tokens(tokens, 6), &g64);
  const auto s32 = model.forward_backward(p32, Batch::tokens(tokens, 6), &g32);
  // Float parameters are the double ones rounded (relative 2^-24); through two blocks with O(1)
  // weights the loss and gradients move by at most a few hundred float ulps.
  const double u = std::numeric_limits<float>::epsilon() / 2;
  BOOST_TEST(std::abs(s64.mean_loss() - s32.mean_loss()) < 512 * u * s64.mean_loss());
  for (std::size_t i = 0; i < g64.size(); ++i) {
    const auto a = g64[i].tensor.as<double>();
    const auto b = g32[i].tensor.f32();
    double scale = 0;
    for (double v : a) scale = std::max(scale, std::abs(v));
    for (std::size_t k = 0; k < a.size(); ++k) BOOST_REQUIRE_SMALL(a[k] - b[k], 512 * u * std::max(scale, 1.0));
  }
}

BOOST_AUTO_TEST_CASE(results_are_bit_identical_for_any_thread_count) {
  // Sizes that give several chunks and tiles in every kernel.
  Model gpt(ModelConfig::parse(R"({"arch":"gpt","vocab":50,"ctx":40,"d_model":96,"layers":2,"heads":4})"));
  auto gp = gpt.make_params();
  gpt.init(gp, 11);
  randomize(gpt, gp, 0.2, 7);
  const auto tokens = token_windows(64, 40, 50, 8);  // 2560 tokens: weight gradients split in row chunks
  Model mlp(ModelConfig::parse(R"({"arch":"mlp","sizes":[100,300,70,10]})"));
  auto mp = mlp.make_params();
  mlp.init(mp, 12);
  const auto data = class_data(300, 100, 10, 9);

  std::vector<TensorSet> gg, mg;
  std::vector<double> gl, ml;
  for (int threads : {1, 2, 3}) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
    gg.push_back(gpt.make_params());
    gl.push_back(gpt.forward_backward(gp, Batch::tokens(tokens, 40), &gg.back()).loss_sum);
    mg.push_back(mlp.make_params());
    ml.push_back(mlp.forward_backward(mp, data.batch(), &mg.back()).loss_sum);
  }
  for (std::size_t k = 1; k < gg.size(); ++k) {
    BOOST_TEST(std::memcmp(&gl[0], &gl[k], sizeof(double)) == 0);
    BOOST_TEST(std::memcmp(&ml[0], &ml[k], sizeof(double)) == 0);
    BOOST_TEST(same_bits(gg[0], gg[k]));
    BOOST_TEST(same_bits(mg[0], mg[k]));
  }
}

BOOST_AUTO_TEST_CASE(workspace_reuse_and_evaluate_do_not_change_results) {
  Model model(ModelConfig::parse(kTinyGpt));
  auto params = model.make_params();
  model.init(params, 3);
  const auto small = token_windows(2, 6, 11, 10), large = token_windows(9, 6, 11, 11);
  auto g1 = model.make_params(), g2 = model.make_params(), g3 = model.make_params();
  const auto a = model.forward_backward(params, Batch::tokens(small, 6), &g1);
  const auto e = model.evaluate(params, Batch::tokens(small, 6));
  model.forward_backward(params, Batch::tokens(large, 6), &g2);
  model.evaluate(params, Batch::tokens(std::span(large).first(60), 3));  // grows the forward-only workspace
  const auto b = model.forward_backward(params, Batch::tokens(small, 6), &g3);
  BOOST_TEST(a.loss_sum == b.loss_sum);
  BOOST_TEST(a.loss_sum == e.loss_sum);
  BOOST_TEST(a.correct == e.correct);
  BOOST_TEST(same_bits(g1, g3));
  // The same windows given as uint16 or int32 tokens give the same result.
  const std::vector<std::uint16_t> s16(small.begin(), small.end());
  const std::vector<std::int32_t> s32(small.begin(), small.end());
  BOOST_TEST(model.evaluate(params, Batch::tokens(s16, 6)).loss_sum == a.loss_sum);
  BOOST_TEST(model.evaluate(params, Batch::tokens(s32, 6)).loss_sum == a.loss_sum);
}

BOOST_AUTO_TEST_CASE(batch_loss_is_the_sum_over_its_examples) {
  Model model(ModelConfig::parse(R"({"arch":"mlp","sizes":[5,7,4]})"));
  auto params = model.make_params(DType::F64);
  randomize(model, params, 0.8, 12);
  const auto data = class_data(6, 5, 4, 13);
  const auto all = model.evaluate(params, data.batch());
  double sum = 0;
  int64_t correct = 0;
  for (int64_t i = 0; i < 6; ++i) {
    const auto s = model.evaluate(
        params, Batch::classification(std::span(data.x).subspan(i * 5, 5), std::span(data.y).subspan(i, 1)));
    sum += s.loss_sum;
    correct += s.correct;
  }
  BOOST_TEST(std::abs(all.loss_sum - sum) < 1e-13);
  BOOST_TEST(all.correct == correct);
  BOOST_TEST(all.count == 6);
}

BOOST_AUTO_TEST_CASE(next_token_logits_match_the_training_loss) {
  Model model(ModelConfig::parse(kTinyGpt));
  auto params = model.make_params(DType::F64);
  randomize(model, params, 0.5, 14);
  const std::vector<std::int32_t> prefix{3, 1, 4, 1};
  std::vector<float> logits(11);
  model.next_token_logits(params, prefix, logits);
  // Two windows that differ only in the last target differ in loss by the logit difference.
  std::vector<std::int32_t> w{3, 1, 4, 1, 0};
  const double l0 = model.evaluate(params, Batch::tokens(w, 4)).loss_sum;
  for (std::int32_t v = 1; v < 11; ++v) {
    w.back() = v;
    const double lv = model.evaluate(params, Batch::tokens(w, 4)).loss_sum;
    // Logits are returned as float: compare within float rounding of O(1) values.
    BOOST_TEST(std::abs((l0 - lv) - (logits[v] - logits[0])) < 1e-6);
  }
  // A prefix longer than ctx uses its last ctx tokens.
  const std::vector<std::int32_t> longer{9, 9, 9, 2, 7, 3, 1, 4, 1};
  const std::vector<std::int32_t> last6{9, 2, 7, 3, 1, 4};
  std::vector<float> a(11), b(11);
  model.next_token_logits(params, std::span(longer).first(8), a);
  model.next_token_logits(params, std::span(last6).first(6), b);
  BOOST_TEST(a == b);
}

BOOST_AUTO_TEST_CASE(gpt_init_statistics) {
  const int64_t layers = 3;
  Model model(ModelConfig::parse(R"({"arch":"gpt","vocab":256,"ctx":128,"d_model":64,"layers":3,"heads":4})"));
  auto params = model.make_params();
  model.init(params, 42);
  // Sample mean within 5 standard errors σ/√n of 0; sample standard deviation within 5 standard
  // errors ≈ σ/√(2n) of σ.
  auto check_normal = [&](const std::string& name, double sigma) {
    const auto v = params.at(name).f32();
    const double n = static_cast<double>(v.size());
    BOOST_TEST(std::abs(sample_mean(v)) < 5 * sigma / std::sqrt(n), name);
    BOOST_TEST(std::abs(std::sqrt(sample_var(v)) - sigma) < 5 * sigma / std::sqrt(2 * n), name);
  };
  const double proj = 0.02 / std::sqrt(2.0 * layers);
  check_normal("wte.weight", 0.02);
  check_normal("wpe.weight", 0.02);
  check_normal("head.weight", 0.02);
  for (int l = 0; l < layers; ++l) {
    const auto p = "blocks." + std::to_string(l) + ".";
    check_normal(p + "attn.qkv.weight", 0.02);
    check_normal(p + "mlp.fc.weight", 0.02);
    check_normal(p + "attn.proj.weight", proj);
    check_normal(p + "mlp.proj.weight", proj);
    for (const auto* b : {"attn.qkv.bias", "attn.proj.bias", "mlp.fc.bias", "mlp.proj.bias", "ln1.bias", "ln2.bias"})
      for (float v : params.at(p + b).f32()) BOOST_REQUIRE(v == 0.0f);
    for (const auto* w : {"ln1.weight", "ln2.weight"})
      for (float v : params.at(p + w).f32()) BOOST_REQUIRE(v == 1.0f);
  }
  for (float v : params.at("ln_f.weight").f32()) BOOST_REQUIRE(v == 1.0f);
  for (float v : params.at("ln_f.bias").f32()) BOOST_REQUIRE(v == 0.0f);

  // Deterministic per (seed, name): same seed same values, other seed other values, and the
  // tied model's wte equals the untied one's.
  auto again = model.make_params();
  model.init(again, 42);
  BOOST_TEST(same_bits(params, again));
  model.init(again, 43);
  BOOST_TEST(!same_bits(params, again));
  Model tied(ModelConfig::parse(
      R"({"arch":"gpt","vocab":256,"ctx":128,"d_model":64,"layers":3,"heads":4,"tie_embeddings":true})"));
  auto tp = tied.make_params();
  tied.init(tp, 42);
  const auto a = tp.at("wte.weight").bytes(), b = params.at("wte.weight").bytes();
  BOOST_TEST(std::memcmp(a.data(), b.data(), a.size()) == 0);
  // Double parameters get the same values widened.
  auto p64 = model.make_params(DType::F64);
  model.init(p64, 42);
  const auto w32 = params.at("wte.weight").f32();
  const auto w64 = p64.at("wte.weight").as<double>();
  for (std::size_t k = 0; k < w32.size(); ++k) BOOST_REQUIRE(w64[k] == static_cast<double>(w32[k]));
}

BOOST_AUTO_TEST_CASE(mlp_init_is_pytorch_kaiming_uniform) {
  Model model(ModelConfig::parse(R"({"arch":"mlp","sizes":[784,256,10]})"));
  auto params = model.make_params();
  model.init(params, 5);
  for (const auto& [name, fan_in] : std::vector<std::pair<std::string, double>>{
           {"layers.0.weight", 784}, {"layers.0.bias", 784}, {"layers.1.weight", 256}, {"layers.1.bias", 256}}) {
    const double bound = 1.0 / std::sqrt(fan_in);
    const auto v = params.at(name).f32();
    for (float x : v) BOOST_REQUIRE(std::abs(x) <= bound);
    if (v.size() > 1000) {
      // U(−b, b): variance b²/3; the sample variance's standard error is b²·√(4/(45n)).
      const double n = static_cast<double>(v.size());
      BOOST_TEST(std::abs(sample_var(v) - bound * bound / 3) < 5 * bound * bound * std::sqrt(4 / (45 * n)), name);
      BOOST_TEST(std::abs(sample_mean(v)) < 5 * bound / std::sqrt(3 * n), name);
    }
  }
}

BOOST_AUTO_TEST_CASE(rejects_bad_batches) {
  Model lr(ModelConfig::parse(R"({"arch":"logreg","features":3,"classes":4})"));
  const auto p = lr.make_params();
  const std::vector<float> x(6, 0.5f);
  const std::vector<std::int32_t> ok{0, 3}, high{0, 4}, neg{-1, 0};
  BOOST_CHECK_NO_THROW(lr.evaluate(p, Batch::classification(x, ok)));
  expect_error(ErrorKind::BadInput, "label 4", [&] { lr.evaluate(p, Batch::classification(x, high)); });
  expect_error(ErrorKind::BadInput, "label -1", [&] { lr.evaluate(p, Batch::classification(x, neg)); });
  expect_error(ErrorKind::BadInput, "feature",
               [&] { lr.evaluate(p, Batch::classification(std::span(x).first(5), ok)); });
  expect_error(ErrorKind::BadInput, "no examples", [&] { lr.evaluate(p, Batch::classification({}, {})); });
  const std::vector<std::uint8_t> toks{1, 2, 3};
  expect_error(ErrorKind::BadInput, "tokens batch", [&] { lr.evaluate(p, Batch::tokens(toks, 2)); });

  Model gpt(ModelConfig::parse(R"({"arch":"gpt","vocab":100,"ctx":4,"d_model":8,"layers":1,"heads":2})"));
  const auto gp = gpt.make_params();
  const std::vector<std::uint8_t> w{1, 2, 3, 99, 5, 6};
  BOOST_CHECK_NO_THROW(gpt.evaluate(gp, Batch::tokens(w, 2)));
  const std::vector<std::uint8_t> bad{1, 2, 3, 4, 100, 6};
  expect_error(ErrorKind::BadInput, "token 100", [&] { gpt.evaluate(gp, Batch::tokens(bad, 2)); });
  const std::vector<std::int32_t> negt{1, -2, 3};
  expect_error(ErrorKind::BadInput, "token -2", [&] { gpt.evaluate(gp, Batch::tokens(negt, 2)); });
  expect_error(ErrorKind::BadInput, "whole number of windows", [&] { gpt.evaluate(gp, Batch::tokens(w, 3)); });
  const std::vector<std::uint8_t> long_w(12, 1);
  expect_error(ErrorKind::BadInput, "ctx = 4", [&] { gpt.evaluate(gp, Batch::tokens(long_w, 5)); });
  expect_error(ErrorKind::BadInput, "sequence length 0", [&] { gpt.evaluate(gp, Batch::tokens(w, 0)); });
  expect_error(ErrorKind::BadInput, "classification batch", [&] { gpt.evaluate(gp, Batch::classification(x, ok)); });
  std::vector<float> out(100);
  const std::vector<std::int32_t> pre{1, 200};
  expect_error(ErrorKind::BadInput, "token 200", [&] { gpt.next_token_logits(gp, pre, out); });
  expect_error(ErrorKind::BadInput, "empty prefix", [&] { gpt.next_token_logits(gp, {}, out); });
  expect_error(ErrorKind::BadInput, "vocab",
               [&] { gpt.next_token_logits(gp, std::span(pre).first(1), std::span(out).first(9)); });
  expect_error(ErrorKind::Usage, "gpt", [&] { lr.next_token_logits(p, pre, out); });
}

BOOST_AUTO_TEST_CASE(rejects_mismatched_parameters) {
  Model lr(ModelConfig::parse(R"({"arch":"logreg","features":3,"classes":4})"));
  const std::vector<float> x(3, 0.5f);
  const std::vector<std::int32_t> y{1};
  {
    TensorSet p;
    p.add("linear.weight", Tensor({4, 3}));
    expect_error(ErrorKind::BadInput, "missing tensor \"linear.bias\"",
                 [&] { lr.evaluate(p, Batch::classification(x, y)); });
    p.add("linear.bias", Tensor({4}));
    p.add("extra", Tensor({1}));
    expect_error(ErrorKind::BadInput, "\"extra\"", [&] { lr.check_params(p); });
  }
  {
    TensorSet p;
    p.add("linear.weight", Tensor({4, 3}));
    p.add("linear.biases", Tensor({4}));
    expect_error(ErrorKind::BadInput, "missing tensor \"linear.bias\"", [&] { lr.check_params(p); });
  }
  {
    TensorSet p;
    p.add("linear.bias", Tensor({4}));  // any order is accepted
    p.add("linear.weight", Tensor({4, 3}));
    BOOST_CHECK_NO_THROW(lr.evaluate(p, Batch::classification(x, y)));
  }
  {
    TensorSet p;
    p.add("linear.weight", Tensor({3, 4}));
    p.add("linear.bias", Tensor({4}));
    expect_error(ErrorKind::BadInput, "shape [3, 4]", [&] { lr.check_params(p); });
  }
  {
    TensorSet p;
    p.add("linear.weight", Tensor({4, 3}, DType::F16));
    p.add("linear.bias", Tensor({4}, DType::F16));
    expect_error(ErrorKind::BadInput, "float16", [&] { lr.check_params(p); });
  }
  {
    TensorSet p;
    p.add("linear.weight", Tensor({4, 3}, DType::F64));
    p.add("linear.bias", Tensor({4}));
    expect_error(ErrorKind::BadInput, "one dtype", [&] { lr.check_params(p); });
  }
  auto p = lr.make_params();
  auto g64 = lr.make_params(DType::F64);
  expect_error(ErrorKind::BadInput, "gradients", [&] { lr.forward_backward(p, Batch::classification(x, y), &g64); });
  expect_error(ErrorKind::Usage, "over the parameters",
               [&] { lr.forward_backward(p, Batch::classification(x, y), &p); });
  expect_error(ErrorKind::Usage, "float32", [&] { lr.make_params(DType::I32); });
}

BOOST_AUTO_TEST_SUITE_END()
