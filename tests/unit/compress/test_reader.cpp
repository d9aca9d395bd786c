// Tests of compress's reading API: EncodedReader (open and validate, decode one tensor, its selection
// mask), the selection kinds and coefficient domains of the codecs, SPEC formatting, and the
// receiver's half of ef21/econtrol (ReceiverEstimate).
#include <boost/test/unit_test.hpp>

#include "support.hpp"

#include <filesystem>
#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/compress/encoded_file.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/output.hpp"
#include "loco/io/source.hpp"

namespace fs = std::filesystem;
namespace lc = loco::compress;
using loco::Attributes;
using loco::DType;
using loco::ErrorKind;
using loco::Shape;
using loco::Tensor;
using loco::test::require_error;
using loco::test::TempDir;

namespace {

const std::vector<float> kX = {1, -3, 3, 2, -3, 0};

// A compressed delta file holding x (named w) and a scalar s, both encoded with spec; edit changes the
// encoding of w before it is written.
void write_file(const std::string& path, const std::string& spec, const std::vector<float>& x,
                const std::function<void(lc::Encoded&)>& edit = {}, const std::string& feedback = "") {
  const auto codec = lc::Codec::parse(spec);
  std::vector<lc::NamedEncoded> t;
  t.push_back(
      {"w", codec.encode(Tensor::from_floats({static_cast<std::int64_t>(x.size())}, x), lc::random_key(5, 0, 1, "w")),
       static_cast<std::int64_t>(x.size()) * 4});
  t.push_back(
      {"s",
       lc::Codec::parse("cast").encode(Tensor::from_floats({}, std::vector<float>{0.5f}), lc::random_key(5, 0, 1, "s")),
       4});
  if (edit) edit(t[0].encoded);
  Attributes root;
  root.set("source_kind", std::string("delta"));
  root.set("codec", codec.spec());
  if (!feedback.empty()) root.set("feedback", feedback);
  lc::write_compressed_file(path, root, t);
}

std::vector<float> values(const Tensor& t) { return {t.f32().begin(), t.f32().end()}; }

// A new file name in dir each call (a file read once cannot be written again in one process).
std::string fresh(const TempDir& dir) {
  static int n = 0;
  return dir / ("f" + std::to_string(n++) + ".h5");
}

// The mask of tensor w of a file holding kX encoded with spec.
std::vector<float> mask_of(const TempDir& dir, const std::string& spec, lc::Domain domain = lc::Domain::Tensor,
                           const std::vector<float>& x = kX) {
  const std::string f = fresh(dir);
  write_file(f, spec, x);
  auto src = loco::io::open_source(f);
  const lc::EncodedReader r(*src);
  return values(r.decode("w", domain, true).mask);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(reader)

BOOST_AUTO_TEST_CASE(opens_a_compressed_file_and_describes_its_tensors) {
  TempDir dir;
  write_file(dir / "c.h5", "topk:k=2+quant:bits=8", kX);
  auto src = loco::io::open_source(dir / "c.h5");
  const lc::EncodedReader r(*src);
  BOOST_TEST(r.path() == dir / "c.h5");
  BOOST_TEST(r.source_kind() == "delta");
  BOOST_TEST(r.codec() == lc::Codec::parse("topk:k=2+quant:bits=8").spec());
  BOOST_TEST(r.feedback() == nullptr);
  BOOST_REQUIRE_EQUAL(r.tensors().size(), 2u);
  const lc::EncodedTensorInfo* w = r.find("w");
  BOOST_REQUIRE(w != nullptr);
  BOOST_TEST(w->name == "w");
  BOOST_TEST((w->shape == Shape{6}));
  BOOST_TEST((w->dtype == DType::F32));
  BOOST_TEST((w->selection == lc::Selection::Elements));
  BOOST_TEST(!w->domain.has_value());
  // 2 uint32 indices, 2 packed bytes, one block's scale and offset.
  BOOST_TEST(w->payload_bytes == 2 * 4 + 2 + 4 + 4);
  const lc::EncodedTensorInfo* s = r.find("s");
  BOOST_REQUIRE(s != nullptr);
  BOOST_TEST(s->shape.empty());
  BOOST_TEST((s->selection == lc::Selection::All));
  BOOST_TEST(r.find("nope") == nullptr);
  BOOST_TEST(r.payload_bytes() == w->payload_bytes + s->payload_bytes);
  // decode equals the codec's decoder; payload_bytes counts what was read.
  const auto d = r.decode("w");
  BOOST_TEST(d.payload_bytes == w->payload_bytes);
  BOOST_TEST(d.mask.numel() == 0);
  const auto direct = lc::decode(lc::read_encoded(*src, "w"));
  BOOST_TEST(values(d.values) == values(direct));
  BOOST_TEST(r.decode("s").values.f32()[0] == 0.5f);
}

BOOST_AUTO_TEST_CASE(refuses_broken_files_naming_file_and_tensor) {
  TempDir dir;
  // A dense file.
  {
    loco::TensorSet s;
    s.add("w", Tensor::from_floats({2}, std::vector<float>{1, 2}));
    Attributes root;
    root.set("kind", std::string("delta"));
    loco::io::write_tensor_set(dir / "d.h5", root, s);
    auto src = loco::io::open_source(dir / "d.h5");
    require_error([&] { lc::EncodedReader r(*src); }, ErrorKind::BadInput, {"d.h5"});
  }
  const auto expect_refused = [&](const std::function<void(lc::Encoded&)>& edit,
                                  std::initializer_list<std::string_view> needles, const std::string& fb = "") {
    const std::string f = fresh(dir);
    write_file(f, "topk:k=2", kX, edit, fb);
    auto src = loco::io::open_source(f);
    require_error([&] { lc::EncodedReader r(*src); }, ErrorKind::BadInput, needles);
  };
  // The messages name the file (its folder here) and the tensor.
  const std::string d = dir.path.string();
  expect_refused([](lc::Encoded& e) { e.attrs.erase("dtype"); }, {d, "/tensors/w", "lacks"});
  expect_refused([](lc::Encoded& e) { e.attrs.erase("spec"); }, {d, "/tensors/w", "lacks"});
  expect_refused([](lc::Encoded& e) { e.attrs.set("ndim", std::int64_t{2}); }, {d, "/tensors/w", "shape"});
  expect_refused([](lc::Encoded& e) { e.attrs.set("dtype", std::string("int32")); }, {d, "tensor w", "int32"});
  expect_refused([](lc::Encoded& e) { e.attrs.set("spec", std::string("topk:k=0")); },
                 {d, "tensor w", "unusable codec spec"});
  expect_refused({}, {d, "feedback", "bogus"}, "bogus");
  const std::string f = fresh(dir);
  // Attributes in order but a dataset missing: found when the tensor is decoded.
  write_file(f, "topk:k=2", kX, [](lc::Encoded& e) { e.datasets.erase(e.datasets.begin()); });
  auto src = loco::io::open_source(f);
  const lc::EncodedReader r(*src);
  require_error([&] { r.decode("w"); }, ErrorKind::BadInput, {f, "tensor w", "indices"});
  require_error([&] { r.decode("x"); }, ErrorKind::BadInput, {f, "tensor x"});
}

BOOST_AUTO_TEST_CASE(selection_masks_against_hand_computed_selections) {
  TempDir dir;
  // kX = {1, -3, 3, 2, -3, 0}: the two largest magnitudes, ties to the lower index, are positions 1, 2.
  BOOST_TEST(mask_of(dir, "topk:k=2") == (std::vector<float>{0, 1, 1, 0, 0, 0}));
  // Tiles of 3: {1, -3, 3} keeps position 1, {2, -3, 0} its local position 1 (global 4).
  BOOST_TEST(mask_of(dir, "topk:k=1,tile=3") == (std::vector<float>{0, 1, 0, 0, 1, 0}));
  // A value stage after the sparsifier does not change what is selected.
  BOOST_TEST(mask_of(dir, "topk:k=2+sign") == (std::vector<float>{0, 1, 1, 0, 0, 0}));
  // A kept value that is 0 still counts as selected.
  BOOST_TEST(mask_of(dir, "topk:k=1", lc::Domain::Tensor, {0, 0, 0, 0}) == (std::vector<float>{1, 0, 0, 0}));
  // randk: every position when k = d; else exactly k, where the decoded (nowhere zero) input is kept.
  BOOST_TEST(mask_of(dir, "randk:k=6") == (std::vector<float>(6, 1.0f)));
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const auto m = mask_of(dir, "randk:k=3", lc::Domain::Tensor, x);
  const std::string rf = fresh(dir);
  write_file(rf, "randk:k=3", x);
  auto src = loco::io::open_source(rf);
  const auto dec = values(lc::EncodedReader(*src).decode("w").values);
  int kept = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    BOOST_TEST(m[i] == (dec[i] != 0.0f ? 1.0f : 0.0f));
    kept += m[i] == 1.0f;
  }
  BOOST_TEST(kept == 3);
  // Codecs without a sparsifier select everything: no mask.
  BOOST_TEST(mask_of(dir, "quant:bits=4").empty());
  // dct_topk selects coefficients: its mask exists only over the coefficient domain.
  const std::string df = fresh(dir);
  write_file(df, "dct_topk:chunk=4,k=1", {1, 1, 1, 1});
  auto dsrc = loco::io::open_source(df);
  require_error([&] { lc::EncodedReader(*dsrc).decode("w", lc::Domain::Tensor, true); }, ErrorKind::Usage,
                {"coefficient"});
}

BOOST_AUTO_TEST_CASE(dct_topk_in_its_coefficient_domain) {
  TempDir dir;
  // Chunk 0 is constant: only its DC coefficient X_0 = (1/2)·4 = 2 is non-zero. Chunk 1 is half the
  // orthonormal basis vector 2, (1/√2)·cos(π(n + ½)·2/4) = ½·{1, −1, −1, 1}: its coefficient 2 is 1.
  const std::vector<float> x = {1, 1, 1, 1, 0.5f, -0.5f, -0.5f, 0.5f};
  BOOST_TEST(mask_of(dir, "dct_topk:chunk=4,k=1", lc::Domain::Coefficients, x) ==
             (std::vector<float>{1, 0, 0, 0, 0, 0, 1, 0}));
  const std::string df = fresh(dir);
  write_file(df, "dct_topk:chunk=4,k=1", x);
  auto src = loco::io::open_source(df);
  const lc::EncodedReader r(*src);
  const lc::EncodedTensorInfo& w = *r.find("w");
  BOOST_TEST((w.selection == lc::Selection::Coefficients));
  BOOST_REQUIRE(w.domain.has_value());
  BOOST_TEST(w.domain->size() == 8);
  BOOST_TEST(w.domain->transform() == "dct_topk:chunk=4,k=1");
  const auto coef = r.decode("w", lc::Domain::Coefficients);
  BOOST_TEST(coef.values.numel() == 8);
  // The float32 basis and sums: a few ulps of 2 and 1.
  const auto c = values(coef.values);
  BOOST_TEST(c[0] == 2.0f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(c[6] == 1.0f, boost::test_tools::tolerance(1e-6f));
  for (int i : {1, 2, 3, 4, 5, 7}) BOOST_TEST(c[i] == 0.0f);
  // The inverse of the decoded coefficients is the tensor-domain decode (the same terms, in the same
  // order; the kept coefficients are stored ascending).
  const Tensor back = w.domain->inverse(coef.values.clone());
  BOOST_TEST(values(back) == values(r.decode("w").values));
  require_error([&] { w.domain->inverse(Tensor::from_floats({7}, std::vector<float>(7))); }, ErrorKind::BadInput,
                {"7"});
}

BOOST_AUTO_TEST_CASE(selection_kinds_and_coefficient_domains_of_the_codecs) {
  using S = lc::Selection;
  const std::vector<std::pair<std::string, S>> cases = {{"cast", S::All},
                                                        {"quant", S::All},
                                                        {"sign", S::All},
                                                        {"qsgd", S::All},
                                                        {"sketch", S::All},
                                                        {"powersgd", S::All},
                                                        {"topk", S::Elements},
                                                        {"randk", S::Elements},
                                                        {"topk+quant", S::Elements},
                                                        {"randk+sign", S::Elements},
                                                        {"dct_topk", S::Coefficients},
                                                        {"dct_topk:tile=2d+quant", S::Coefficients}};
  for (const auto& [spec, want] : cases) {
    BOOST_TEST_INFO(spec);
    const auto c = lc::Codec::parse(spec);
    BOOST_TEST((c.selection() == want));
    BOOST_TEST(c.coefficient_domain({96, 32}).has_value() == (want == S::Coefficients));
  }
  // One domain per chunk and tiling, whatever is kept; 1d pads the last chunk.
  const auto a = *lc::Codec::parse("dct_topk:chunk=4,k=1").coefficient_domain({10});
  const auto b = *lc::Codec::parse("dct_topk:chunk=4,k=3+quant").coefficient_domain({10});
  const auto c = *lc::Codec::parse("dct_topk:chunk=8,k=1").coefficient_domain({10});
  const auto d = *lc::Codec::parse("dct_topk:chunk=4,k=1").coefficient_domain({12});
  BOOST_TEST(a.size() == 12);
  BOOST_TEST((a == b));
  BOOST_TEST(!(a == c));
  BOOST_TEST(!(a == d));  // same tiling (3 chunks), another tensor
  BOOST_TEST(b.transform() == "dct_topk:chunk=4,k=3");
  const auto t2 = *lc::Codec::parse("dct_topk:chunk=64,k=4,tile=2d").coefficient_domain({96, 32});
  BOOST_TEST(t2.size() == 96 * 32);  // tiles 48 × 32, two of them
}

BOOST_AUTO_TEST_CASE(spec_formatting_round_trips) {
  const std::string spec = "topk:density=0.02,tile=4096+quant:bits=2";
  BOOST_TEST(lc::format_spec(lc::parse_spec(spec)) == spec);
  BOOST_TEST(lc::format_spec(lc::parse_spec("sign")) == "sign");
  // Spaces are not kept: the formatted spec is the canonical spelling of what was parsed.
  BOOST_TEST(lc::format_spec(lc::parse_spec(" topk : k = 3 + cast ")) == "topk:k=3+cast");
  for (const auto& name : lc::codec_names()) {
    const auto c = lc::Codec::parse(name);
    BOOST_TEST_INFO(name);
    BOOST_TEST(lc::format_spec(lc::parse_spec(c.spec())) == c.spec());
    const auto stages = lc::parse_spec(c.spec());
    const auto again = lc::parse_spec(lc::format_spec(stages));
    BOOST_REQUIRE_EQUAL(again.size(), stages.size());
    for (std::size_t i = 0; i < stages.size(); ++i) {
      BOOST_TEST(again[i].name == stages[i].name);
      BOOST_TEST((again[i].params == stages[i].params));
    }
  }
}

BOOST_AUTO_TEST_CASE(feedback_kinds_that_need_a_receiver_estimate) {
  for (const char* k : {"ef21", "econtrol", "econtrol:eta=0"})
    BOOST_TEST(lc::parse_feedback(k)->receiver_keeps_estimate());
  for (const char* k : {"ef14", "sparseloco", "dgc"}) BOOST_TEST(!lc::parse_feedback(k)->receiver_keeps_estimate());
}

BOOST_AUTO_TEST_CASE(receiver_estimate_accumulates_increments_per_worker_and_round) {
  TempDir dir;
  const std::string est = dir / "est";
  const std::vector<std::pair<std::string, Shape>> tensors = {{"w", {3}}};
  const auto round = [&](std::int64_t r, const std::vector<float>& inc) {
    lc::ReceiverEstimate g(est, "delta.h5", std::int64_t{7}, r, "ef21", tensors);
    Tensor x = Tensor::from_floats({3}, inc);
    const auto bytes = g.add_base("w", x);
    g.commit([&](std::size_t) { return x.clone(); }, "cfg");
    return std::make_pair(bytes, values(x));
  };
  // Round 0 starts from g = 0; each round then adds to the newest earlier estimate.
  BOOST_TEST(round(0, {1, 2, 3}).first == 0u);
  BOOST_TEST(fs::exists(est + "/worker-7-round-000000.h5"));
  const auto r1 = round(1, {0.5f, 0, -3});
  BOOST_TEST(r1.first == 12u);
  BOOST_TEST(r1.second == (std::vector<float>{1.5f, 2, 0}));
  // Rerunning round 1 builds on round 0 again, so it gives the same estimate.
  BOOST_TEST(round(1, {0.5f, 0, -3}).second == (std::vector<float>{1.5f, 2, 0}));
  // Round 3 builds on round 1 (no round 2) and removes round 0, older than its base.
  BOOST_TEST(round(3, {1, 1, 1}).second == (std::vector<float>{2.5f, 3, 1}));
  BOOST_TEST(!fs::exists(est + "/worker-7-round-000000.h5"));
  BOOST_TEST(fs::exists(est + "/worker-7-round-000001.h5"));
  auto src = loco::io::open_source(est + "/worker-7-round-000003.h5");
  BOOST_TEST(src->attributes().get_string("feedback").value_or("") == "ef21");
  BOOST_TEST(src->attributes().get_string("model_config").value_or("") == "cfg");
  BOOST_TEST(src->attributes().get_int("worker").value_or(-1) == 7);
  // Another worker has its own estimates.
  lc::ReceiverEstimate other(est, "delta.h5", std::int64_t{8}, std::int64_t{4}, "ef21", tensors);
  Tensor z = Tensor::from_floats({3}, std::vector<float>{1, 1, 1});
  BOOST_TEST(other.add_base("w", z) == 0u);
  require_error([&] { lc::ReceiverEstimate(est, "delta.h5", std::nullopt, std::int64_t{1}, "ef21", tensors); },
                ErrorKind::BadInput, {"delta.h5", "worker and round"});
  const std::vector<std::pair<std::string, Shape>> other_shape = {{"w", {4}}};
  require_error([&] { lc::ReceiverEstimate(est, "delta.h5", std::int64_t{7}, std::int64_t{5}, "ef21", other_shape); },
                ErrorKind::BadInput, {"worker-7-round-000003.h5", "tensor w"});
}

BOOST_AUTO_TEST_SUITE_END()
