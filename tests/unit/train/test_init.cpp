// loco-init's library side (configs from presets, inline JSON and files; seeded models written
// with models.md's names, shapes and initialization) and the model/data file readers' checks.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "loco/train/init.hpp"

using namespace loco;
using namespace loco::train;
using namespace loco::train::test;
using std::int64_t;

namespace {

struct Moments {
  double mean = 0, sd = 0, min = 0, max = 0;
};

Moments moments(const Tensor& t) {
  Moments m;
  const auto v = t.f32();
  double s = 0, s2 = 0;
  m.min = m.max = v[0];
  for (float x : v) {
    s += x;
    s2 += double(x) * x;
    m.min = std::min<double>(m.min, x);
    m.max = std::max<double>(m.max, x);
  }
  const double n = static_cast<double>(v.size());
  m.mean = s / n;
  m.sd = std::sqrt(s2 / n - m.mean * m.mean);
  return m;
}

bool all_equal(const Tensor& t, float value) {
  for (float x : t.f32())
    if (x != value) return false;
  return true;
}

InitOptions with_config(std::string c, std::string out = "", std::uint64_t seed = 0) {
  InitOptions o;
  o.config = std::move(c);
  o.output = std::move(out);
  o.seed = seed;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(init)

BOOST_AUTO_TEST_CASE(configs_come_from_presets_inline_json_and_files) {
  Scratch s("cfg");
  const auto presets = list_presets();
  std::vector<std::string> names;
  for (const auto& [n, j] : presets) names.push_back(n);
  BOOST_TEST(std::is_sorted(names.begin(), names.end()));
  BOOST_TEST((std::find(names.begin(), names.end(), "gpt-tiny") != names.end()));
  for (const auto& [name, json] : presets) {
    InitOptions o;
    o.preset = name;
    BOOST_TEST_INFO(name);
    BOOST_TEST(resolve_config(o).canonical_json() == model::ModelConfig::parse(json).canonical_json());
  }
  const std::string text = R"({"arch":"mlp","sizes":[3,4,2]})";
  BOOST_TEST(resolve_config(with_config(text)).sizes == (std::vector<int64_t>{3, 4, 2}));
  BOOST_TEST(resolve_config(with_config("  \n" + text)).sizes == (std::vector<int64_t>{3, 4, 2}));
  {
    std::ofstream f(s.file("c.json"));
    f << R"({"arch":"gpt","ctx":16,"d_model":8,"layers":1,"heads":2})";
  }
  const auto g = resolve_config(with_config(s.file("c.json")));
  BOOST_TEST(g.vocab == 256);  // defaults filled in
  BOOST_TEST(g.mlp_ratio == 4);
  BOOST_TEST(!g.tie_embeddings);

  InitOptions both = with_config(text);
  both.preset = "gpt-tiny";
  require_error([&] { resolve_config(both); }, ErrorKind::Usage, {"exactly one"});
  require_error([&] { resolve_config(InitOptions{}); }, ErrorKind::Usage, {"exactly one"});
  InitOptions unknown;
  unknown.preset = "gpt-huge";
  require_error([&] { resolve_config(unknown); }, ErrorKind::Usage, {"gpt-huge", "gpt-tiny"});
  require_error([&] { resolve_config(with_config(R"({"arch":"mlp","sizes":[3,2],"widht":4})")); }, ErrorKind::BadInput,
                {"--config", "widht"});
  require_error([&] { resolve_config(with_config(R"({"arch":"gpt","ctx":16,"d_model":8,"layers":1,"heads":3})")); },
                ErrorKind::BadInput, {"heads"});
  require_error([&] { resolve_config(with_config(s.file("none.json"))); }, ErrorKind::Io, {"none.json"});
}

BOOST_AUTO_TEST_CASE(init_writes_the_seeded_model_with_the_names_and_shapes_of_models_md) {
  Scratch s("write");
  const std::string gpt = R"({"arch":"gpt","vocab":64,"ctx":16,"d_model":32,"layers":2,"heads":2)";
  init_model(with_config(gpt + "}", s.file("g.h5"), 5));
  init_model(with_config(gpt + R"(,"tie_embeddings":true})", s.file("t.h5"), 5));
  init_model(with_config(R"({"arch":"mlp","sizes":[300,200,10]})", s.file("m.h5"), 5));
  init_model(with_config(R"({"arch":"logreg","features":6,"classes":4})", s.file("l.h5"), 5));
  init_model(with_config(gpt + "}", s.file("g6.h5"), 6));

  const model::ModelFile g = model::read_model(s.file("g.h5"));
  BOOST_TEST(g.round == 0);
  BOOST_TEST(g.attributes.get_int("seed").value() == 5);
  BOOST_TEST(g.attributes.get_string("model_config").value() == g.config.canonical_json());
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  for (const auto& e : g.params) {
    names.push_back(e.name);
    shapes.push_back(e.tensor.shape());
  }
  std::vector<std::string> want = {"wte.weight", "wpe.weight"};
  std::vector<Shape> want_shapes = {{64, 32}, {16, 32}};
  for (int i = 0; i < 2; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    for (auto [n, sh] : std::vector<std::pair<std::string, Shape>>{{"ln1.weight", {32}},
                                                                   {"ln1.bias", {32}},
                                                                   {"attn.qkv.weight", {96, 32}},
                                                                   {"attn.qkv.bias", {96}},
                                                                   {"attn.proj.weight", {32, 32}},
                                                                   {"attn.proj.bias", {32}},
                                                                   {"ln2.weight", {32}},
                                                                   {"ln2.bias", {32}},
                                                                   {"mlp.fc.weight", {128, 32}},
                                                                   {"mlp.fc.bias", {128}},
                                                                   {"mlp.proj.weight", {32, 128}},
                                                                   {"mlp.proj.bias", {32}}}) {
      want.push_back(b + n);
      want_shapes.push_back(sh);
    }
  }
  for (auto [n, sh] : std::vector<std::pair<std::string, Shape>>{
           {"ln_f.weight", {32}}, {"ln_f.bias", {32}}, {"head.weight", {64, 32}}}) {
    want.push_back(n);
    want_shapes.push_back(sh);
  }
  BOOST_TEST(names == want, boost::test_tools::per_element());
  BOOST_TEST((shapes == want_shapes));
  BOOST_TEST(g.attributes.get_int("parameters").value() == g.params.numel());

  // Tied: the same list without head.weight.
  const model::ModelFile t = model::read_model(s.file("t.h5"));
  BOOST_TEST(t.params.size() == g.params.size() - 1);
  BOOST_TEST(!t.params.contains("head.weight"));

  // The file holds exactly Model::init under the seed; another seed gives other values.
  {
    model::Model net(g.config);
    TensorSet p = net.make_params();
    net.init(p, 5);
    require_bitwise_equal(g.params, p, "gpt init");
    const model::ModelFile g6 = model::read_model(s.file("g6.h5"));
    BOOST_TEST(moments(difference(g.params, g6.params).at("wte.weight")).sd > 0.01);
  }
  // GPT-2 init: N(0, 0.02), residual projections N(0, 0.02/√(2·layers)), biases 0, LayerNorm 1/0.
  // The sample sd of n normal draws has relative sd 1/√(2n): allow 6 of those.
  for (const auto& e : g.params) {
    BOOST_TEST_CONTEXT(e.name) {
      const auto& n = e.name;
      const bool norm = n.find("ln") != std::string::npos;
      if (norm && n.ends_with(".weight")) BOOST_TEST(all_equal(e.tensor, 1.0f));
      else if (n.ends_with(".bias")) BOOST_TEST(all_equal(e.tensor, 0.0f));
      else {
        const double sd = n.ends_with("proj.weight") ? 0.02 / std::sqrt(4.0) : 0.02;
        const auto m = moments(e.tensor);
        const double tol = 6 / std::sqrt(2.0 * static_cast<double>(e.tensor.numel()));
        BOOST_TEST(std::abs(m.sd / sd - 1) <= tol);
        BOOST_TEST(std::abs(m.mean) <= 6 * sd / std::sqrt(static_cast<double>(e.tensor.numel())));
      }
    }
  }
  // MLP: U(−1/√in, 1/√in) for weights and biases (sd bound/√3, and the extremes near the bound).
  const model::ModelFile m = model::read_model(s.file("m.h5"));
  for (const auto& e : m.params) {
    BOOST_TEST_CONTEXT(e.name) {
      const double in = e.name.starts_with("layers.0.") ? 300 : 200;
      const double bound = 1 / std::sqrt(in);
      const auto mo = moments(e.tensor);
      BOOST_TEST(mo.min >= -bound);
      BOOST_TEST(mo.max <= bound);
      if (e.tensor.numel() >= 1000) {
        BOOST_TEST(std::abs(mo.sd / (bound / std::sqrt(3.0)) - 1) <=
                   6 / std::sqrt(2.0 * static_cast<double>(e.tensor.numel())));
        BOOST_TEST(mo.max > 0.99 * bound);
      }
    }
  }
  std::vector<std::string> mlp_names;
  for (const auto& e : m.params) mlp_names.push_back(e.name);
  BOOST_TEST(
      mlp_names == (std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"}),
      boost::test_tools::per_element());
  // logreg: zeros, weight (classes × features).
  const model::ModelFile l = model::read_model(s.file("l.h5"));
  BOOST_TEST((l.params.at("linear.weight").shape() == Shape{4, 6}));
  BOOST_TEST((l.params.at("linear.bias").shape() == Shape{4}));
  for (const auto& e : l.params) BOOST_TEST(all_equal(e.tensor, 0.0f));
}

BOOST_AUTO_TEST_CASE(read_model_and_read_data_refuse_malformed_files) {
  Scratch s("files");
  const auto cfg = config(R"({"arch":"logreg","features":3,"classes":2})");
  auto write = [&](const std::string& name, std::vector<std::pair<std::string, Tensor>> tensors, Attributes root) {
    std::vector<io::TensorInfo> plan;
    for (const auto& [n, t] : tensors) plan.push_back({"tensors", n, t.shape(), DType::F32, {}});
    auto sink = io::create_sink(s.file(name), io::Format::Loco, root, plan);
    for (std::size_t i = 0; i < tensors.size(); ++i) sink->write(i, tensors[i].second);
    sink->commit();
    return s.file(name);
  };
  Attributes model_root;
  model_root.set("kind", std::string("model"));
  model_root.set("model_config", cfg.canonical_json());
  auto tensors = [](Shape w, bool bias, bool extra) {
    std::vector<std::pair<std::string, Tensor>> v;
    v.emplace_back("linear.weight", Tensor(w));
    if (bias) v.emplace_back("linear.bias", Tensor({2}));
    if (extra) v.emplace_back("linear.extra", Tensor({2}));
    return v;
  };
  require_error(
      [&] {
        model::read_model(write("missing.h5", tensors({2, 3}, false, false), model_root));
      },
      ErrorKind::BadInput, {"missing.h5", "linear.bias", "missing"});
  require_error(
      [&] {
        model::read_model(write("shape.h5", tensors({3, 2}, true, false), model_root));
      },
      ErrorKind::BadInput, {"shape.h5", "linear.weight", "[2, 3]"});
  require_error(
      [&] {
        model::read_model(write("extra.h5", tensors({2, 3}, true, true), model_root));
      },
      ErrorKind::BadInput, {"extra.h5", "linear.extra"});
  {
    auto v = tensors({2, 3}, true, false);
    v[0].second.f32()[4] = std::numeric_limits<float>::quiet_NaN();
    require_error([&] { model::read_model(write("nan.h5", std::move(v), model_root)); }, ErrorKind::Numeric,
                  {"nan.h5", "linear.weight", "NaN"});
  }
  Attributes no_cfg;
  no_cfg.set("kind", std::string("model"));
  require_error(
      [&] {
        model::read_model(write("nocfg.h5", tensors({2, 3}, true, false), no_cfg));
      },
      ErrorKind::BadInput, {"nocfg.h5", "model_config"});
  Attributes delta_root = model_root;
  delta_root.set("kind", std::string("delta"));
  require_error(
      [&] {
        model::read_model(write("delta.h5", tensors({2, 3}, true, false), delta_root));
      },
      ErrorKind::BadInput, {"delta.h5", "delta"});
  BOOST_TEST(model::read_model(write("ok.h5", tensors({2, 3}, true, false), model_root)).params.size() == 2);

  // Data: labels outside [0, classes), no classes attribute, x and y of different lengths.
  auto data = [&](const std::string& name, int64_t nx, int64_t ny, std::int32_t label, bool classes) {
    Tensor x({nx, 3});
    Tensor y({ny}, DType::I32);
    for (auto& v : y.as<std::int32_t>()) v = label;
    Attributes root;
    root.set("kind", std::string("data"));
    if (classes) root.set("classes", std::int64_t{2});
    auto sink = io::create_sink(s.file(name), io::Format::Loco, root,
                                {{"data", "x", x.shape(), DType::F32, {}}, {"data", "y", y.shape(), DType::I32, {}}});
    sink->write(0, x);
    sink->write(1, y);
    sink->commit();
    return s.file(name);
  };
  require_error([&] { data::read_data(data("label.h5", 4, 4, 2, true)); }, ErrorKind::BadInput, {"label.h5"});
  require_error([&] { data::read_data(data("noclasses.h5", 4, 4, 0, false)); }, ErrorKind::BadInput,
                {"noclasses.h5", "classes"});
  require_error([&] { data::read_data(data("rows.h5", 4, 5, 0, true)); }, ErrorKind::BadInput, {"rows.h5", "/data/x"});
  require_error([&] { data::read_data(s.file("ok.h5")); }, ErrorKind::BadInput, {"ok.h5", "model"});
  const data::DataFile d = data::read_data(data("good.h5", 4, 4, 1, true));
  BOOST_TEST(d.examples() == 4);
  BOOST_TEST(!d.tokens);
}

BOOST_AUTO_TEST_SUITE_END()
