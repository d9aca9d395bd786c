// Tests of compressed loco files: the group layout and byte counts of man 5 loco-format, tensor-by-tensor
// round trips through compress_file/decompress_file, and refusals of bad inputs.
#include <boost/test/unit_test.hpp>

#include "support.hpp"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/output.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace fs = std::filesystem;
namespace lc = loco::compress;
using loco::Attributes;
using loco::DType;
using loco::ErrorKind;
using loco::Tensor;

namespace {

using loco::test::TempDir;

Tensor normal(loco::Shape shape, std::uint64_t seed) {
  Tensor t(shape);
  loco::fill_normal(t.f32(), 0.0f, 1.0f, seed, 1);
  return t;
}

void write_delta(const std::string& path, float poison = 0.0f) {
  loco::TensorSet s;
  s.add("w", normal({30, 20}, 1));
  s.add("b", normal({20}, 2));
  s.add("s", Tensor::from_floats({}, std::vector<float>{0.25f}));
  if (poison != 0.0f) s.at("b").f32()[3] = poison;
  Attributes root;
  root.set("kind", std::string("delta"));
  root.set("round", std::int64_t{4});
  root.set("worker", std::int64_t{2});
  root.set("samples", std::int64_t{128});
  loco::io::write_tensor_set(path, root, s);
}

bool throws_kind(const std::function<void()>& f, ErrorKind k) {
  try {
    f();
  } catch (const loco::Error& e) {
    return e.kind() == k;
  }
  return false;
}

}  // namespace

BOOST_AUTO_TEST_CASE(compressed_file_layout_and_byte_counts) {
  TempDir dir;
  write_delta(dir / "d.h5");
  const auto codec = lc::Codec::parse("topk:density=0.1,tile=64+quant:bits=4,block=8");
  const auto sum = lc::compress_file(dir / "d.h5", dir / "c.h5", codec, 7);
  BOOST_TEST(sum.tensors == 3);
  BOOST_TEST(sum.raw_bytes == (600 + 20 + 1) * 4);
  auto src = loco::io::open_source(dir / "c.h5");
  BOOST_TEST((loco::io::file_kind(*src) == loco::io::Kind::Compressed));
  BOOST_TEST(src->attributes().get_int("raw_bytes").value_or(0) == sum.raw_bytes);
  BOOST_TEST(src->attributes().get_int("payload_bytes").value_or(0) == sum.payload_bytes);
  BOOST_TEST(src->attributes().get_int("samples").value_or(0) == 128);
  BOOST_TEST(src->attributes().get_string("source_kind").value_or("") == "delta");
  BOOST_TEST((lc::encoded_tensor_names(*src) == std::vector<std::string>{"w", "b", "s"}));
  std::int64_t payload = 0;
  for (const auto& t : src->tensors()) payload += t.numel() * static_cast<std::int64_t>(loco::dtype_size(t.dtype));
  BOOST_TEST(payload == sum.payload_bytes);
  const Attributes g = src->group_attributes("tensors/w");
  BOOST_TEST(g.get_string("codec").value_or("") == "topk+quant");
  BOOST_TEST(g.get_string("spec").value_or("") == codec.spec());
  BOOST_TEST(g.get_string("dtype").value_or("") == "float32");
  BOOST_TEST(g.get_int("seed").value_or(0) == 7);
  BOOST_TEST(g.get_int("quant.bits").value_or(0) == 4);
  BOOST_TEST(g.get_int("raw_bytes").value_or(0) == 2400);
  const auto* shape = g.find("shape");
  BOOST_TEST_REQUIRE(shape != nullptr);
  BOOST_TEST((std::get<std::vector<std::int64_t>>(*shape) == std::vector<std::int64_t>{30, 20}));
  // Decoding from the file equals decoding the in-memory encoding made with the same key.
  const Tensor x = normal({30, 20}, 1);
  const Tensor a = lc::decode(lc::read_encoded(*src, "w"));
  const Tensor b = lc::decode(codec.encode(x, lc::random_key(7, 4, 2, "w")));
  BOOST_TEST((a.shape() == loco::Shape{30, 20}));
  BOOST_TEST(std::equal(a.f32().begin(), a.f32().end(), b.f32().begin(), b.f32().end()));
}

BOOST_AUTO_TEST_CASE(decompress_restores_the_dense_kind_shapes_and_values) {
  TempDir dir;
  write_delta(dir / "d.h5");
  lc::compress_file(dir / "d.h5", dir / "c.h5", lc::Codec::parse("topk:k=1000000"), 0);  // keeps everything
  lc::decompress_file(dir / "c.h5", dir / "r.h5");
  auto in = loco::io::open_source(dir / "d.h5");
  auto out = loco::io::open_source(dir / "r.h5");
  BOOST_TEST((loco::io::file_kind(*out) == loco::io::Kind::Delta));
  BOOST_TEST(out->attributes().get_int("round").value_or(0) == 4);
  BOOST_TEST(!out->attributes().contains("raw_bytes"));
  for (const char* n : {"w", "b", "s"}) {
    const Tensor a = in->read(in->get(n)), b = out->read(out->get(n));
    BOOST_TEST((a.shape() == b.shape()), n);
    BOOST_TEST(std::equal(a.f32().begin(), a.f32().end(), b.f32().begin(), b.f32().end()), n);
  }
}

BOOST_AUTO_TEST_CASE(refusals) {
  TempDir dir;
  write_delta(dir / "nan.h5", NAN);
  BOOST_TEST(throws_kind([&] { lc::compress_file(dir / "nan.h5", dir / "c.h5", lc::Codec::parse("sign"), 0); },
                         ErrorKind::Numeric));
  BOOST_TEST(!fs::exists(dir / "c.h5"));
  write_delta(dir / "d.h5");
  lc::compress_file(dir / "d.h5", dir / "c.h5", lc::Codec::parse("sign"), 0);
  BOOST_TEST(throws_kind([&] { lc::compress_file(dir / "c.h5", dir / "c2.h5", lc::Codec::parse("sign"), 0); },
                         ErrorKind::BadInput));
  BOOST_TEST(throws_kind([&] { lc::decompress_file(dir / "d.h5", dir / "r.h5"); }, ErrorKind::BadInput));
}

BOOST_AUTO_TEST_CASE(powersgd_state_file_warm_starts_the_next_round) {
  TempDir dir;
  loco::TensorSet s;
  s.add("w", normal({30, 20}, 1));
  s.add("b", normal({20}, 2));
  Attributes root;
  root.set("kind", std::string("delta"));
  root.set("round", std::int64_t{0});
  loco::io::write_tensor_set(dir / "d.h5", root, s);
  const auto codec = lc::Codec::parse("powersgd:rank=2");
  lc::compress_file(dir / "d.h5", dir / "c1.h5", codec, 1, dir / "state.h5");
  auto st = loco::io::open_source(dir / "state.h5", /*register_input=*/false);
  BOOST_TEST((loco::io::file_kind(*st) == loco::io::Kind::State));
  const auto& q = st->get("w", "state/powersgd_q");
  BOOST_TEST((q.shape == loco::Shape{20, 2}));
  BOOST_TEST(st->find("b", "state/powersgd_q") == nullptr);  // 1-D: sent dense, no state
  // The second round starts from the saved Q: the same as encoding with that state in memory.
  lc::TensorState mem;
  mem.set("powersgd_q", st->read(q));
  st.reset();
  lc::compress_file(dir / "d.h5", dir / "c2.h5", codec, 1, dir / "state.h5");
  auto c2 = loco::io::open_source(dir / "c2.h5");
  const auto e = codec.encode(normal({30, 20}, 1), lc::random_key(1, 0, 0, "w"), DType::F32, "w", &mem);
  const Tensor a = lc::decode(lc::read_encoded(*c2, "w")), b = lc::decode(e);
  BOOST_TEST(std::equal(a.f32().begin(), a.f32().end(), b.f32().begin(), b.f32().end()));
  BOOST_TEST(
      throws_kind([&] { lc::compress_file(dir / "d.h5", dir / "c3.h5", lc::Codec::parse("sign"), 0, dir / "s2.h5"); },
                  ErrorKind::Usage));
}
