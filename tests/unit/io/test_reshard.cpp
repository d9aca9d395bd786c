// Tensor-parallel resharding against hand-computed slices (column, row, fused sub-parameters,
// sub_param_shape, vocabulary padding, rules, replication), exact consolidation, and sharded
// safetensors with their index.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "support.hpp"

#include "loco/core/error.hpp"
#include "loco/io/reshard.hpp"
#include "loco/io/safetensors_index.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

using loco::DType;
using loco::ErrorKind;
using loco::Shape;
using loco::io::TensorInfo;
using loco::test::require_error;
using loco::test::TempDir;
namespace fs = std::filesystem;

namespace {

// Writes a loco file whose tensor k holds 0, 1, 2, ... (as float32) with the given attributes.
void write_counting(const std::string& path, const std::vector<TensorInfo>& plan, loco::Attributes root = {}) {
  if (!root.contains("kind")) root.set("kind", std::string("model"));
  auto sink = loco::io::create_sink(path, root, plan);
  for (std::size_t i = 0; i < plan.size(); ++i) {
    loco::Tensor t(plan[i].shape);
    for (std::int64_t j = 0; j < t.numel(); ++j) t.f32()[static_cast<std::size_t>(j)] = static_cast<float>(j);
    sink->write(i, t);
  }
  sink->commit();
}

std::vector<float> values(const loco::io::TensorSource& s, const std::string& name) {
  const loco::Tensor t = s.read(s.get(name));
  return {t.f32().begin(), t.f32().end()};
}

TensorInfo info(std::string name, Shape shape, loco::Attributes a = {}) {
  return {"tensors", std::move(name), std::move(shape), DType::F32, std::move(a)};
}

loco::Attributes attrs(std::initializer_list<std::pair<const char*, loco::AttrValue>> kv) {
  loco::Attributes a;
  for (const auto& [k, v] : kv) a.set(k, v);
  return a;
}

using V = std::vector<float>;

}  // namespace

BOOST_AUTO_TEST_SUITE(reshard)

BOOST_AUTO_TEST_CASE(splits_as_the_universal_loader_slices_and_consolidates_exactly) {
  TempDir tmp("reshard");
  const std::vector<TensorInfo> plan = {
      info("w", {4, 2}, attrs({{"cat_dim", std::int64_t{0}}})),
      info("r", {2, 4}, attrs({{"cat_dim", std::int64_t{1}}})),
      info("fc", {4, 2}, attrs({{"cat_dim", std::int64_t{0}}, {"param_n_sub_params", std::int64_t{2}}})),
      info("qkv", {8, 1},
           attrs({{"cat_dim", std::int64_t{0}},
                  {"sub_param_shape", std::string(R"({"patterns":[],"shape":[[2,2,4],1],"partition_dim":0})")}})),
      info("emb", {3, 2}, attrs({{"cat_dim", std::int64_t{0}}, {"vocab_tensor", std::int64_t{1}}})),
      info("ln", {3}),
      info("proj", {2, 4}),
  };
  write_counting(tmp / "full.h5", plan);
  loco::io::ReshardOptions opt;
  opt.degree = 2;
  opt.vocab_divisible_by = 1;
  opt.rules = {loco::io::parse_tp_rule("pro.*=1")};
  const auto paths = loco::io::split_tensor_parallel(tmp / "full.h5", tmp / "tp.h5", opt);
  BOOST_REQUIRE_EQUAL(paths.size(), 2u);
  BOOST_TEST(paths[1] == tmp / "tp-00002-of-00002.h5");
  auto r0 = loco::io::open_source(paths[0]);
  auto r1 = loco::io::open_source(paths[1]);
  BOOST_TEST((r1->attributes().get_int("tp_rank") == 1));
  BOOST_TEST((r1->attributes().get_int("tp_degree") == 2));
  BOOST_TEST(values(*r0, "w") == V({0, 1, 2, 3}));
  BOOST_TEST(values(*r1, "w") == V({4, 5, 6, 7}));
  BOOST_TEST(values(*r0, "r") == V({0, 1, 4, 5}));  // columns 0-1 of [[0..3],[4..7]]
  BOOST_TEST(values(*r1, "r") == V({2, 3, 6, 7}));
  BOOST_TEST(values(*r0, "fc") == V({0, 1, 4, 5}));  // first half of each sub-parameter (rows 0 and 2)
  BOOST_TEST(values(*r1, "fc") == V({2, 3, 6, 7}));
  BOOST_TEST(values(*r0, "qkv") == V({0, 2, 4, 5}));  // q row 0, k row 2, v rows 4-5
  BOOST_TEST(values(*r1, "qkv") == V({1, 3, 6, 7}));
  BOOST_TEST(values(*r0, "emb") == V({0, 1, 2, 3}));  // 3 rows padded to 4
  BOOST_TEST(values(*r1, "emb") == V({4, 5, 0, 0}));
  BOOST_TEST(values(*r0, "ln") == V({0, 1, 2}));
  BOOST_TEST(values(*r1, "ln") == V({0, 1, 2}));
  BOOST_TEST(values(*r1, "proj") == V({2, 3, 6, 7}));
  BOOST_TEST(r0->get("emb").shape == Shape({2, 2}));
  BOOST_TEST(r0->get("qkv").shape == Shape({4, 1}));

  loco::io::consolidate_tensor_parallel(paths[1], tmp / "back.h5");
  auto full = loco::io::open_source(tmp / "full.h5");
  auto back = loco::io::open_source(tmp / "back.h5");
  BOOST_REQUIRE_EQUAL(back->tensors().size(), full->tensors().size());
  for (const auto& t : full->tensors()) {
    const TensorInfo& b = back->get(t.name);
    BOOST_TEST(b.shape == t.shape);
    BOOST_TEST(values(*back, t.name) == values(*full, t.name));
    BOOST_TEST(b.attrs.size() == t.attrs.size(), t.name);
    for (const auto& e : t.attrs) BOOST_TEST((b.attrs.find(e.name) && *b.attrs.find(e.name) == e.value), e.name);
  }
  BOOST_TEST(!back->attributes().contains("tp_rank"));
}

BOOST_AUTO_TEST_CASE(vocabulary_padding_follows_the_target_degree) {
  TempDir tmp("reshard");
  write_counting(tmp / "full.h5",
                 {info("emb", {5, 1}, attrs({{"vocab_tensor", std::int64_t{1}}, {"cat_dim", std::int64_t{0}}}))});
  loco::io::ReshardOptions opt;
  opt.degree = 2;
  opt.vocab_divisible_by = 4;  // 5 rows → multiple of 4·2 = 8
  const auto paths = loco::io::split_tensor_parallel(tmp / "full.h5", tmp / "tp.h5", opt);
  auto r1 = loco::io::open_source(paths[1]);
  BOOST_TEST(values(*r1, "emb") == V({4, 0, 0, 0}));
  loco::io::consolidate_tensor_parallel(paths[0], tmp / "back.h5");
  BOOST_TEST(values(*loco::io::open_source(tmp / "back.h5"), "emb") == V({0, 1, 2, 3, 4}));
}

BOOST_AUTO_TEST_CASE(state_groups_and_their_step_travel_along) {
  TempDir tmp("reshard");
  std::vector<TensorInfo> plan = {info("w", {2, 2}, attrs({{"cat_dim", std::int64_t{1}}})),
                                  {"state/exp_avg", "w", {2, 2}, DType::F32, attrs({{"cat_dim", std::int64_t{1}}})}};
  {
    loco::Attributes root;
    root.set("kind", std::string("model"));
    auto sink = loco::io::create_sink(tmp / "full.h5", root, plan);
    loco::Tensor t({2, 2});
    for (int j = 0; j < 4; ++j) t.f32()[static_cast<std::size_t>(j)] = static_cast<float>(j);
    sink->write(0, t);
    sink->write(1, t);
    sink->set_group_attribute("state", "step", std::int64_t{9});
    sink->commit();
  }
  loco::io::ReshardOptions opt;
  opt.degree = 2;
  const auto paths = loco::io::split_tensor_parallel(tmp / "full.h5", tmp / "tp.h5", opt);
  auto r1 = loco::io::open_source(paths[1]);
  BOOST_TEST((r1->group_attributes("state").get_int("step") == 9));
  const loco::Tensor m = r1->read(r1->get("w", "state/exp_avg"));
  BOOST_TEST(V(m.f32().begin(), m.f32().end()) == V({1, 3}));
}

BOOST_AUTO_TEST_CASE(refusals) {
  TempDir tmp("reshard");
  write_counting(tmp / "odd.h5", {info("w", {4, 2}, attrs({{"cat_dim", std::int64_t{0}}}))});
  loco::io::ReshardOptions opt;
  opt.degree = 3;
  require_error([&] { loco::io::split_tensor_parallel(tmp / "odd.h5", tmp / "tp.h5", opt); }, ErrorKind::BadInput,
                {"tensors/w", "not divisible by the degree 3"});
  BOOST_TEST(!fs::exists(tmp.path / "tp-00001-of-00003.h5"));
  opt.degree = 2;
  require_error([&] { loco::io::split_tensor_parallel(tmp / "odd.h5", tmp / "tp.safetensors", opt); }, ErrorKind::Usage,
                {".h5"});
  // Replicated copies that disagree.
  const auto paths = loco::io::split_tensor_parallel(tmp / "odd.h5", tmp / "tp.h5", opt);
  write_counting(tmp / "rep.h5", {info("ln", {3})});
  const auto rep = loco::io::split_tensor_parallel(tmp / "rep.h5", tmp / "rep-tp.h5", opt);
  {
    loco::Attributes root;
    root.set("kind", std::string("model"));
    root.set("tp_rank", std::int64_t{1});
    root.set("tp_degree", std::int64_t{2});
    auto sink = loco::io::create_sink(rep[1], root, {info("ln", {3}, attrs({{"tp_dim", std::int64_t{-1}}}))});
    sink->write(0, loco::Tensor({3}));
    sink->commit();
  }
  require_error([&] { loco::io::consolidate_tensor_parallel(rep[0], tmp / "x.h5"); }, ErrorKind::BadInput,
                {"replicated tensor tensors/ln differs"});
  fs::remove(paths[1]);
  require_error([&] { loco::io::consolidate_tensor_parallel(paths[0], tmp / "x.h5"); }, ErrorKind::BadInput,
                {"shard 2 of 2 is missing"});
  require_error([&] { loco::io::consolidate_tensor_parallel(tmp / "odd.h5", tmp / "x.h5"); }, ErrorKind::Usage,
                {"-0000r-of-0000T"});
  BOOST_TEST(!fs::exists(tmp.path / "x.h5"));
  require_error([] { loco::io::parse_tp_rule("nodim"); }, ErrorKind::Usage, {"REGEX=DIM"});
  require_error([] { loco::io::parse_tp_rule("a=x"); }, ErrorKind::Usage, {"'x' is not an integer", "replicate"});
  require_error([] { loco::io::parse_tp_rule("(=1"); }, ErrorKind::Usage, {"regular expression"});
  BOOST_TEST(loco::io::parse_tp_rule("a=b=1").pattern == "a=b");
  BOOST_TEST(loco::io::parse_tp_rule("x=replicate").dim == -1);
}

BOOST_AUTO_TEST_CASE(zero_flat_partitions_and_back) {
  TempDir tmp("zero");
  const std::vector<TensorInfo> plan = {
      info("a", {3}, attrs({{"cat_dim", std::int64_t{0}}})),
      info("b", {2, 2}, attrs({{"x", 1.5}, {"s", std::string("text")}, {"v", std::vector<std::int64_t>{4, 5}}})),
      {"state/exp_avg", "a", {3}, DType::F32, {}}};
  write_counting(tmp / "full.h5", plan);
  const auto paths = loco::io::split_zero(tmp / "full.h5", tmp / "z.h5", 3);
  BOOST_REQUIRE_EQUAL(paths.size(), 3u);
  // Flat tensors group: [0 1 2 | 0 1 2 3] padded to 9, three partitions of 3.
  std::vector<std::unique_ptr<loco::io::TensorSource>> z;
  for (const auto& p : paths) z.push_back(loco::io::open_source(p));
  auto flat = [&](int r, const char* group) {
    const loco::Tensor t =
        z[static_cast<std::size_t>(r)]->read(z[static_cast<std::size_t>(r)]->get("zero_flat", group));
    return V(t.f32().begin(), t.f32().end());
  };
  BOOST_TEST(flat(0, "tensors") == V({0, 1, 2}));
  BOOST_TEST(flat(1, "tensors") == V({0, 1, 2}));
  BOOST_TEST(flat(2, "tensors") == V({3, 0, 0}));
  BOOST_TEST(flat(0, "state/exp_avg") == V({0}));
  BOOST_TEST(flat(2, "state/exp_avg") == V({2}));
  BOOST_TEST((z[2]->attributes().get_int("zero_rank") == 2));
  loco::io::consolidate_tensor_parallel(paths[2], tmp / "back.h5");
  auto full = loco::io::open_source(tmp / "full.h5");
  auto back = loco::io::open_source(tmp / "back.h5");
  BOOST_REQUIRE_EQUAL(back->tensors().size(), 3u);
  for (const auto& t : full->tensors()) {
    const TensorInfo& b = back->get(t.name, t.group);
    BOOST_TEST(b.shape == t.shape);
    const loco::Tensor x = full->read(t), y = back->read(b);
    BOOST_TEST(V(x.f32().begin(), x.f32().end()) == V(y.f32().begin(), y.f32().end()));
    BOOST_TEST(b.attrs.size() == t.attrs.size());
    for (const auto& e : t.attrs) BOOST_TEST((b.attrs.find(e.name) && *b.attrs.find(e.name) == e.value), e.name);
  }
  BOOST_TEST(!back->attributes().contains("zero_layout"));
  // One dtype per group.
  {
    loco::Attributes root;
    root.set("kind", std::string("model"));
    auto sink = loco::io::create_sink(tmp / "mixed.h5", root, {info("a", {2}), {"tensors", "h", {2}, DType::F16, {}}});
    sink->write(0, loco::Tensor({2}));
    sink->write(1, loco::Tensor({2}, DType::F16));
    sink->commit();
  }
  require_error([&] { loco::io::split_zero(tmp / "mixed.h5", tmp / "m.h5", 2); }, ErrorKind::BadInput,
                {"group tensors mixes float32 and float16"});
  BOOST_TEST(!fs::exists(tmp.path / "m-00001-of-00002.h5"));
}

BOOST_AUTO_TEST_CASE(sharded_safetensors_and_their_index) {
  TempDir tmp("shards");
  const std::vector<TensorInfo> plan = {info("a", {4}), info("b", {4}), info("c", {4}), info("d", {12})};
  auto write = [&](const std::string& path, std::uint64_t max) {
    loco::Attributes root;
    root.set("format", std::string("pt"));
    auto sink = loco::io::create_sharded_safetensors_sink(path, root, plan, max);
    for (std::size_t i = 0; i < plan.size(); ++i) {
      loco::Tensor t(plan[i].shape);
      for (std::int64_t j = 0; j < t.numel(); ++j)
        t.f32()[static_cast<std::size_t>(j)] = static_cast<float>(10 * i + j);
      sink->write(i, t);
    }
    sink->commit();
  };
  // 16 + 16 fit in 40 bytes, c starts the second shard, d (48 bytes, over the budget) a third.
  write(tmp / "model.safetensors", 40);
  for (const char* f : {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                        "model-00003-of-00003.safetensors", "model.safetensors.index.json"})
    BOOST_TEST(fs::is_regular_file(tmp.path / f), f);
  BOOST_TEST(!fs::exists(tmp.path / "model.safetensors"));
  std::ifstream f(tmp / "model.safetensors.index.json");
  const auto j = nlohmann::json::parse(f);
  BOOST_TEST(j["metadata"]["total_size"].get<std::uint64_t>() == 96u);
  BOOST_TEST(j["weight_map"]["b"].get<std::string>() == "model-00001-of-00003.safetensors");
  BOOST_TEST(j["weight_map"]["c"].get<std::string>() == "model-00002-of-00003.safetensors");
  BOOST_TEST(j["weight_map"]["d"].get<std::string>() == "model-00003-of-00003.safetensors");
  auto idx = loco::io::open_source(tmp / "model.safetensors.index.json");
  BOOST_TEST(idx->format() == "safetensors-index");
  BOOST_REQUIRE_EQUAL(idx->tensors().size(), 4u);
  BOOST_TEST(idx->tensors()[2].name == "c");
  BOOST_TEST(values(*idx, "c") == V({20, 21, 22, 23}));
  BOOST_TEST(values(*idx, "d")[11] == 41.0f);
  BOOST_TEST((idx->attributes().get_string("format") == std::string("pt")));
  // Everything fits: one plain file, no index.
  fs::create_directories(tmp.path / "one");
  write(tmp / "one/model.safetensors", 1000);
  BOOST_TEST(fs::is_regular_file(tmp.path / "one/model.safetensors"));
  BOOST_TEST(!fs::exists(tmp.path / "one/model.safetensors.index.json"));
  // Broken indexes.
  std::ofstream(tmp / "escape.json") << R"({"weight_map": {"a": "../model-00001-of-00003.safetensors"}})";
  require_error([&] { loco::io::open_source(tmp / "escape.json"); }, ErrorKind::BadInput,
                {"outside the index's folder"});
  std::ofstream(tmp / "missing.json")
      << R"({"weight_map": {"a": "model-00001-of-00003.safetensors", "zz": "model-00001-of-00003.safetensors", "b": "model-00001-of-00003.safetensors"}})";
  require_error([&] { loco::io::open_source(tmp / "missing.json"); }, ErrorKind::BadInput, {"zz", "missing"});
  std::ofstream(tmp / "unnamed.json") << R"({"weight_map": {"a": "model-00001-of-00003.safetensors"}})";
  require_error([&] { loco::io::open_source(tmp / "unnamed.json"); }, ErrorKind::BadInput,
                {"tensor b", "does not name"});
  std::ofstream(tmp / "other.json") << R"({"something": 1})";
  require_error([&] { loco::io::open_source(tmp / "other.json"); }, ErrorKind::BadInput, {"weight_map"});
}

BOOST_AUTO_TEST_SUITE_END()
