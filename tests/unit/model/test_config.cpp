// Model configs: parsing, validation errors, canonical form, and the exact parameter layout.
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "loco/core/error.hpp"
#include "loco/model/model.hpp"

using namespace loco;
using namespace loco::model;

namespace {

// Checks that parsing fails with BadInput and a message containing `needle`.
void expect_bad(const std::string& json, const std::string& needle) {
  try {
    ModelConfig::parse(json);
    BOOST_ERROR("parsed without error: " << json);
  } catch (const Error& e) {
    BOOST_TEST((e.kind() == ErrorKind::BadInput));
    BOOST_TEST_MESSAGE(e.what());
    BOOST_CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos,
                        "message \"" << e.what() << "\" does not mention " << needle);
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(config_suite)

BOOST_AUTO_TEST_CASE(parses_the_three_architectures) {
  const auto g = ModelConfig::parse(
      R"({"arch":"gpt","vocab":256,"ctx":128,"d_model":128,"layers":4,"heads":4,"mlp_ratio":4,"tie_embeddings":false})");
  BOOST_TEST((g.arch == Arch::Gpt));
  BOOST_TEST(g.ctx == 128);
  BOOST_TEST(g.d_model == 128);
  BOOST_TEST(g.layers == 4);
  BOOST_TEST(g.heads == 4);
  BOOST_TEST(!g.is_classifier());
  BOOST_TEST(g.num_classes() == 256);
  const auto m = ModelConfig::parse(R"({"arch":"mlp","sizes":[784,256,256,10]})");
  BOOST_TEST((m.sizes == std::vector<std::int64_t>{784, 256, 256, 10}));
  BOOST_TEST(m.input_features() == 784);
  BOOST_TEST(m.num_classes() == 10);
  const auto l = ModelConfig::parse(R"({"arch":"logreg","features":784,"classes":10})");
  BOOST_TEST(l.features == 784);
  BOOST_TEST(l.classes == 10);
  BOOST_TEST(l.is_classifier());
}

BOOST_AUTO_TEST_CASE(canonical_json_sorts_keys_and_fills_defaults) {
  const auto a = ModelConfig::parse(R"({"layers":2,"heads":2,"d_model":16,"ctx":8,"arch":"gpt"})");
  const auto b = ModelConfig::parse(
      R"({"arch":"gpt","ctx":8,"d_model":16,"heads":2,"layers":2,"mlp_ratio":4,"tie_embeddings":false,"vocab":256})");
  BOOST_TEST(
      a.canonical_json() ==
      R"({"arch":"gpt","ctx":8,"d_model":16,"heads":2,"layers":2,"mlp_ratio":4,"tie_embeddings":false,"vocab":256})");
  BOOST_TEST(a.canonical_json() == b.canonical_json());
  BOOST_TEST((a == b));
  BOOST_TEST((ModelConfig::parse(a.canonical_json()) == a));
  BOOST_TEST(ModelConfig::parse(R"({"sizes":[3,2],"arch":"mlp"})").canonical_json() ==
             R"({"arch":"mlp","sizes":[3,2]})");
  BOOST_TEST(ModelConfig::parse(R"({"classes":3,"features":5,"arch":"logreg"})").canonical_json() ==
             R"({"arch":"logreg","classes":3,"features":5})");
  const auto tied =
      ModelConfig::parse(R"({"arch":"gpt","ctx":8,"d_model":16,"heads":2,"layers":2,"tie_embeddings":true})");
  BOOST_TEST(tied.canonical_json() != a.canonical_json());
  BOOST_TEST(!(tied == a));
}

BOOST_AUTO_TEST_CASE(rejects_bad_configs_naming_the_key) {
  expect_bad("{", "not valid JSON");
  expect_bad("[1,2]", "JSON object");
  expect_bad(R"({"features":3,"classes":2})", "\"arch\"");
  expect_bad(R"({"arch":7})", "\"arch\"");
  expect_bad(R"({"arch":"cnn"})", "cnn");
  expect_bad(R"({"arch":"logreg","features":3,"classes":2,"hidden":4})", "\"hidden\"");
  expect_bad(R"({"arch":"logreg","features":3})", "\"classes\"");
  expect_bad(R"({"arch":"logreg","features":0,"classes":2})", "\"features\"");
  expect_bad(R"({"arch":"logreg","features":3.5,"classes":2})", "\"features\"");
  expect_bad(R"({"arch":"logreg","features":"3","classes":2})", "\"features\"");
  expect_bad(R"({"arch":"logreg","features":3,"classes":-2})", "\"classes\"");
  expect_bad(R"({"arch":"logreg","features":18446744073709551615,"classes":2})", "\"features\"");
  expect_bad(R"({"arch":"mlp","sizes":[784]})", "\"sizes\"");
  expect_bad(R"({"arch":"mlp","sizes":784})", "\"sizes\"");
  expect_bad(R"({"arch":"mlp","sizes":[784,0,10]})", "\"sizes\"");
  expect_bad(R"({"arch":"mlp","sizes":[784,"a"]})", "\"sizes\"");
  expect_bad(R"({"arch":"mlp","sizes":[4,2],"features":4})", "\"features\"");
  const std::string gpt = R"("arch":"gpt","ctx":8,"d_model":12,"layers":2)";
  expect_bad("{" + gpt + "}", "\"heads\"");
  expect_bad("{" + gpt + R"(,"heads":5})", "\"heads\" (5) must divide \"d_model\" (12)");
  expect_bad("{" + gpt + R"(,"heads":0})", "\"heads\"");
  expect_bad("{" + gpt + R"(,"heads":2,"vocab":65537})", "\"vocab\"");
  expect_bad("{" + gpt + R"(,"heads":2,"vocab":0})", "\"vocab\"");
  expect_bad("{" + gpt + R"(,"heads":2,"mlp_ratio":0})", "\"mlp_ratio\"");
  expect_bad("{" + gpt + R"(,"heads":2,"tie_embeddings":1})", "\"tie_embeddings\"");
  expect_bad("{" + gpt + R"(,"heads":2,"dropout":0.1})", "\"dropout\"");
  expect_bad(R"({"arch":"gpt","ctx":0,"d_model":12,"layers":2,"heads":2})", "\"ctx\"");
  expect_bad(R"({"arch":"gpt","ctx":8,"d_model":12,"layers":0,"heads":2})", "\"layers\"");
  // Too many parameters in total (each dimension alone is allowed).
  expect_bad(R"({"arch":"gpt","ctx":8,"d_model":268435456,"layers":2,"heads":1})", "parameters");
}

BOOST_AUTO_TEST_CASE(validate_checks_configs_built_in_code) {
  ModelConfig c;
  c.arch = Arch::Gpt;
  c.ctx = 4;
  c.d_model = 6;
  c.layers = 1;
  c.heads = 4;
  BOOST_CHECK_THROW(c.validate(), Error);
  BOOST_CHECK_THROW(Model{c}, Error);
  c.heads = 3;
  BOOST_CHECK_NO_THROW(c.validate());
}

BOOST_AUTO_TEST_CASE(gpt_param_names_and_shapes_follow_models_md) {
  const auto c =
      ModelConfig::parse(R"({"arch":"gpt","vocab":11,"ctx":5,"d_model":8,"layers":2,"heads":2,"mlp_ratio":3})");
  const auto specs = param_specs(c);
  std::vector<std::pair<std::string, Shape>> want{{"wte.weight", {11, 8}}, {"wpe.weight", {5, 8}}};
  for (int l = 0; l < 2; ++l) {
    const auto p = "blocks." + std::to_string(l) + ".";
    const std::vector<std::pair<std::string, Shape>> block{
        {p + "ln1.weight", {8}},          {p + "ln1.bias", {8}},
        {p + "attn.qkv.weight", {24, 8}}, {p + "attn.qkv.bias", {24}},
        {p + "attn.proj.weight", {8, 8}}, {p + "attn.proj.bias", {8}},
        {p + "ln2.weight", {8}},          {p + "ln2.bias", {8}},
        {p + "mlp.fc.weight", {24, 8}},   {p + "mlp.fc.bias", {24}},
        {p + "mlp.proj.weight", {8, 24}}, {p + "mlp.proj.bias", {8}}};
    want.insert(want.end(), block.begin(), block.end());
  }
  want.push_back({"ln_f.weight", {8}});
  want.push_back({"ln_f.bias", {8}});
  want.push_back({"head.weight", {11, 8}});
  BOOST_REQUIRE_EQUAL(specs.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    BOOST_TEST(specs[i].name == want[i].first);
    BOOST_TEST((specs[i].shape == want[i].second), specs[i].name);
  }
  BOOST_TEST((specs[0].role == ParamRole::Embedding));
  BOOST_TEST((specs[2].role == ParamRole::NormWeight));
  BOOST_TEST((specs[4].role == ParamRole::Weight));
  BOOST_TEST((specs[5].role == ParamRole::Bias));

  auto tied = c;
  tied.tie_embeddings = true;
  const auto tspecs = param_specs(tied);
  BOOST_TEST(tspecs.size() == want.size() - 1);
  BOOST_TEST(tspecs.back().name == "ln_f.bias");

  Model model(c);
  std::int64_t total = 0;
  for (const auto& [name, shape] : want) total += shape_numel(shape);
  BOOST_TEST(model.num_parameters() == total);
  const auto set = model.make_params();
  BOOST_REQUIRE_EQUAL(set.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    BOOST_TEST(set[i].name == want[i].first);
    BOOST_TEST((set[i].tensor.dtype() == DType::F32));
    for (float v : set[i].tensor.f32()) BOOST_REQUIRE(v == 0.0f);
  }
}

BOOST_AUTO_TEST_CASE(classifier_param_names_and_shapes) {
  const auto m = param_specs(ModelConfig::parse(R"({"arch":"mlp","sizes":[784,256,128,10]})"));
  BOOST_REQUIRE_EQUAL(m.size(), 6u);
  const std::vector<std::pair<std::string, Shape>> want{{"layers.0.weight", {256, 784}}, {"layers.0.bias", {256}},
                                                        {"layers.1.weight", {128, 256}}, {"layers.1.bias", {128}},
                                                        {"layers.2.weight", {10, 128}},  {"layers.2.bias", {10}}};
  for (std::size_t i = 0; i < want.size(); ++i) {
    BOOST_TEST(m[i].name == want[i].first);
    BOOST_TEST((m[i].shape == want[i].second));
  }
  const auto l = param_specs(ModelConfig::parse(R"({"arch":"logreg","features":784,"classes":10})"));
  BOOST_REQUIRE_EQUAL(l.size(), 2u);
  BOOST_TEST(l[0].name == "linear.weight");
  BOOST_TEST((l[0].shape == Shape{10, 784}));
  BOOST_TEST(l[1].name == "linear.bias");
  BOOST_TEST((l[1].shape == Shape{10}));
}

BOOST_AUTO_TEST_SUITE_END()
