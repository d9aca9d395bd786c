// Evaluation and sampling: known losses, the GPT window cover of a token stream, metrics JSON,
// greedy determinism and seeded temperature sampling.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <numbers>

#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "loco/eval/eval.hpp"

using namespace loco;
using namespace loco::train;
using namespace loco::train::test;
using std::int64_t;

namespace {

const char* kGpt = R"({"arch":"gpt","vocab":64,"ctx":8,"d_model":8,"layers":1,"heads":2})";

data::DataFile token_data(const std::vector<std::uint8_t>& t) {
  data::DataFile d;
  d.path = "tokens";
  d.tokens = true;
  d.stream.tokens = t;
  return d;
}

model::LossStats window_loss(model::Model& net, const TensorSet& p, const std::vector<std::uint8_t>& t, int64_t from,
                             int64_t seq) {
  std::vector<std::uint8_t> w(t.begin() + from, t.begin() + from + seq + 1);
  return net.evaluate(p, model::Batch::tokens(std::span<const std::uint8_t>(w), seq));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(evaluation)

BOOST_AUTO_TEST_CASE(a_logreg_with_zero_weights_has_loss_ln_classes) {
  Scratch s("zero");
  for (int64_t classes : {2, 3, 10}) {
    BOOST_TEST_CONTEXT("classes " << classes) {
      const auto cfg = config(R"({"arch":"logreg","features":4,"classes":)" + std::to_string(classes) + "}");
      write_init_model(s.file("m.h5"), cfg, 1);  // logreg initializes to zeros
      write_rows(s.file("d.h5"), 13, 4, classes, static_cast<std::uint64_t>(classes));
      const model::ModelFile m = model::read_model(s.file("m.h5"));
      const data::DataFile d = data::read_data(s.file("d.h5"));
      io::forget_inputs();
      model::Model net(m.config);
      for (int64_t batch : {1, 4, 64}) {
        const auto st = loco::eval::evaluate(net, m.params, d, batch);
        BOOST_TEST(st.count == 13);
        // Every example's loss is 0 + log(Σ e^0) − 0 = log(classes), exactly in double; the mean
        // of 13 equal doubles differs from it only by the rounding of the 13-term sum.
        const double ln_c = std::log(static_cast<double>(classes));
        BOOST_TEST(std::abs(st.mean_loss() - ln_c) <= 13 * std::numeric_limits<double>::epsilon() * ln_c);
        // All logits tie, so the first arg-max (class 0) is the prediction.
        int64_t zeros = 0;
        for (auto y : d.rows.y) zeros += y == 0;
        BOOST_TEST(st.correct == zeros);
        const auto j = loco::eval::metrics_json(m.config, st, m.path, d.path);
        BOOST_TEST(j["loss"].get<double>() == st.mean_loss());
        BOOST_TEST(j["count"].get<int64_t>() == 13);
        BOOST_TEST(j["accuracy"].get<double>() == static_cast<double>(zeros) / 13.0);
        BOOST_TEST(j["model"].get<std::string>() == m.path);
        BOOST_TEST(j["data"].get<std::string>() == d.path);
        BOOST_TEST(!j.contains("perplexity"));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(gpt_windows_predict_every_token_after_the_first_exactly_once) {
  const auto cfg = config(kGpt);
  model::Model net(cfg);
  TensorSet p = net.make_params();
  net.init(p, 2);
  const int64_t ctx = cfg.ctx;
  for (int64_t len :
       {int64_t{2}, int64_t{3}, ctx, ctx + 1, ctx + 2, 2 * ctx, 2 * ctx + 1, 2 * ctx + 2, 3 * ctx + 5, int64_t{61}}) {
    BOOST_TEST_CONTEXT("length " << len) {
      const auto t = random_tokens(static_cast<std::size_t>(len), 64, static_cast<std::uint64_t>(len));
      const data::DataFile d = token_data(t);
      // The cover by hand: windows starting at w·ctx of ctx+1 tokens, then a shorter last one.
      model::LossStats manual;
      int64_t start = 0;
      for (; start + ctx < len; start += ctx) manual += window_loss(net, p, t, start, ctx);
      if (start < len - 1) manual += window_loss(net, p, t, start, len - 1 - start);
      BOOST_TEST(manual.count == len - 1);
      for (int64_t batch : {1, 2, 64}) {
        const auto st = loco::eval::evaluate(net, p, d, batch);
        BOOST_TEST(st.count == len - 1);
        BOOST_TEST(st.correct == manual.correct);
        // batch 1 makes the same calls in the same order as the manual cover; larger batches
        // only regroup the double sum of at most 60 per-token losses of ~ln 64 each.
        if (batch == 1) BOOST_TEST(st.loss_sum == manual.loss_sum);
        else
          BOOST_TEST(std::abs(st.loss_sum - manual.loss_sum) <=
                     64 * std::numeric_limits<double>::epsilon() * manual.loss_sum);
      }
    }
  }
  // Exactly ctx+1 tokens: one window.
  const auto t = random_tokens(static_cast<std::size_t>(ctx + 1), 64, 77);
  BOOST_TEST(loco::eval::evaluate(net, p, token_data(t), 64).loss_sum == window_loss(net, p, t, 0, ctx).loss_sum);
  require_error([&] { loco::eval::evaluate(net, p, token_data({5}), 1); }, ErrorKind::BadInput, {"1 tokens"});
  require_error([&] { loco::eval::evaluate(net, p, token_data(t), 0); }, ErrorKind::Usage, {"batch"});
}

BOOST_AUTO_TEST_CASE(gpt_metrics_json_has_perplexity_and_bits_per_byte) {
  const auto cfg = config(kGpt);
  model::LossStats st;
  st.loss_sum = 30.0;
  st.count = 10;
  st.correct = 4;
  const auto j = loco::eval::metrics_json(cfg, st, "m.h5", "d.h5");
  BOOST_TEST(j["loss"].get<double>() == 3.0);
  BOOST_TEST(j["count"].get<int64_t>() == 10);
  BOOST_TEST(j["perplexity"].get<double>() == std::exp(3.0));
  BOOST_TEST(j["bits_per_byte"].get<double>() == 3.0 / std::numbers::ln2);
  BOOST_TEST(j["accuracy"].get<double>() == 0.4);
}

BOOST_AUTO_TEST_CASE(greedy_sampling_is_the_arg_max_and_temperature_sampling_follows_the_seed) {
  const auto cfg = config(kGpt);
  model::Model net(cfg);
  TensorSet p = net.make_params();
  net.init(p, 3);
  // Larger weights than the init's 0.02 so that logits differ clearly between tokens.
  for (auto& e : p)
    if (e.name.find("ln") == std::string::npos)
      for (float& v : e.tensor.f32()) v *= 40;
  const std::vector<std::int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};  // longer than ctx
  const auto greedy = loco::eval::sample(net, p, prompt, 20, 0.0, 1);
  BOOST_TEST(greedy.size() == prompt.size() + 20);
  BOOST_TEST(std::equal(prompt.begin(), prompt.end(), greedy.begin()));
  BOOST_TEST(loco::eval::sample(net, p, prompt, 20, 0.0, 99) == greedy);  // greedy ignores the seed
  // Greedy by hand: the first arg-max of the next-token logits, step by step.
  std::vector<std::int32_t> seq = prompt;
  std::vector<float> logits(64);
  for (int i = 0; i < 20; ++i) {
    net.next_token_logits(p, seq, logits);
    seq.push_back(static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
  }
  BOOST_TEST(seq == greedy);

  const auto a = loco::eval::sample(net, p, prompt, 40, 1.5, 7);
  BOOST_TEST(loco::eval::sample(net, p, prompt, 40, 1.5, 7) == a);
  BOOST_TEST(loco::eval::sample(net, p, prompt, 40, 1.5, 8) != a);
  for (auto v : a) BOOST_TEST((v >= 0 && v < 64));
  // As T → 0 the distribution concentrates on the arg-max: with T = 1e-30 every other token's
  // weight exp((l − max)/T) underflows to 0, so sampling must give the greedy sequence.
  BOOST_TEST(loco::eval::sample(net, p, prompt, 20, 1e-30, 5) == greedy);

  require_error([&] { loco::eval::sample(net, p, {}, 3, 0.0, 1); }, ErrorKind::Usage, {"prompt"});
  require_error([&] { loco::eval::sample(net, p, prompt, 3, -1.0, 1); }, ErrorKind::Usage, {"temperature"});
}

BOOST_AUTO_TEST_SUITE_END()
