// Tests of shape arithmetic, Tensor storage and conversion, and TensorSet lookup.
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "loco/core/error.hpp"
#include "loco/core/tensor.hpp"

namespace {

using loco::DType;
using loco::ErrorKind;
using loco::Shape;
using loco::Tensor;

// True when fn throws loco::Error of the given kind whose message contains `needle`.
template <typename Fn>
bool throws(Fn&& fn, ErrorKind kind, const std::string& needle = "") {
  try {
    fn();
  } catch (const loco::Error& e) {
    const bool ok = e.kind() == kind && std::string(e.what()).find(needle) != std::string::npos;
    if (!ok) BOOST_TEST_MESSAGE("unexpected error: " << e.what());
    return ok;
  }
  return false;
}

constexpr std::int64_t kTwo62 = std::int64_t{1} << 62;

}  // namespace

BOOST_AUTO_TEST_SUITE(tensor)

BOOST_AUTO_TEST_CASE(shape_numel_counts) {
  BOOST_TEST(loco::shape_numel({}) == 1);
  BOOST_TEST(loco::shape_numel({7}) == 7);
  BOOST_TEST(loco::shape_numel({2, 3, 4}) == 24);
  BOOST_TEST(loco::shape_numel({0, 5}) == 0);
  BOOST_TEST(loco::shape_numel({5, 0, 3}) == 0);
  BOOST_TEST(loco::shape_numel({kTwo62}) == kTwo62);
  BOOST_TEST(loco::shape_numel({std::int64_t{1} << 31, std::int64_t{1} << 31}) == kTwo62);
  BOOST_TEST(loco::shape_string({3, 4}) == "[3, 4]");
  BOOST_TEST(loco::shape_string({}) == "[]");
}

BOOST_AUTO_TEST_CASE(shape_numel_rejects_negative_and_overflow) {
  BOOST_TEST(throws([] { loco::shape_numel({-1}); }, ErrorKind::BadInput, "[-1]"));
  BOOST_TEST(throws([] { loco::shape_numel({4, -2, 3}); }, ErrorKind::BadInput, "[4, -2, 3]"));
  BOOST_TEST(throws([] { loco::shape_numel({kTwo62 + 1}); }, ErrorKind::BadInput));
  BOOST_TEST(throws([] { loco::shape_numel({std::int64_t{1} << 31, std::int64_t{1} << 31, 2}); }, ErrorKind::BadInput));
  BOOST_TEST(throws([] { loco::shape_numel({INT64_MAX, 2}); }, ErrorKind::BadInput));
  // Products that wrap int64 back to small or negative numbers must not pass.
  BOOST_TEST(throws([] { loco::shape_numel({std::int64_t{1} << 32, std::int64_t{1} << 32}); }, ErrorKind::BadInput));
  BOOST_TEST(throws([] { loco::shape_numel({3, 3074457345618258603}); }, ErrorKind::BadInput));  // 3·x ≡ 1 mod 2^64
  BOOST_TEST(throws([] { Tensor t({-3}); }, ErrorKind::BadInput));
}

BOOST_AUTO_TEST_CASE(tensor_too_many_bytes_throws) {
  // 2^61 float64s are 2^64 bytes: the byte count wraps size_t and must be refused, not allocated small.
  BOOST_TEST(throws([] { Tensor t({std::int64_t{1} << 61}, DType::F64); }, ErrorKind::BadInput));
  BOOST_TEST(throws([] { Tensor t({kTwo62}, DType::F32); }, ErrorKind::BadInput));
  BOOST_TEST(throws(
      [] {
        Tensor::uninitialized({std::int64_t{1} << 40, std::int64_t{1} << 21}, DType::U64);
      },
      ErrorKind::BadInput));
}

BOOST_AUTO_TEST_CASE(construction_is_zeroed_and_aligned) {
  for (DType t : loco::kAllDTypes) {
    Tensor x({3, 5}, t);
    BOOST_TEST((x.dtype() == t));
    BOOST_TEST(x.numel() == 15);
    BOOST_TEST(x.rank() == 2);
    BOOST_TEST(x.nbytes() == 15 * loco::dtype_size(t));
    BOOST_TEST(x.bytes().size() == x.nbytes());
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(x.bytes().data()) % 64 == 0u);
    for (std::byte b : x.bytes()) BOOST_TEST_REQUIRE((b == std::byte{0}));
  }
  Tensor u = Tensor::uninitialized({4, 4}, DType::F16);
  BOOST_TEST(u.numel() == 16);
  BOOST_TEST(u.nbytes() == 32u);
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(u.bytes().data()) % 64 == 0u);
  Tensor scalar(Shape{});
  BOOST_TEST(scalar.numel() == 1);
  BOOST_TEST(scalar.rank() == 0);
  Tensor empty({0, 3});
  BOOST_TEST(empty.numel() == 0);
  BOOST_TEST(empty.f32().empty());
}

BOOST_AUTO_TEST_CASE(from_floats_copies) {
  std::vector<float> v = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 7.0f};
  Tensor t = Tensor::from_floats({2, 3}, v);
  BOOST_TEST((t.dtype() == DType::F32));
  BOOST_TEST((t.shape() == Shape{2, 3}));
  BOOST_TEST(t.f32().size() == v.size());
  for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(t.f32()[i] == v[i]);
  v[0] = 99.0f;  // the tensor owns a copy
  BOOST_TEST(t.f32()[0] == 1.5f);
  BOOST_CHECK_THROW(Tensor::from_floats({2, 2}, v), loco::Error);
  BOOST_CHECK_THROW(Tensor::from_floats({7}, v), loco::Error);
}

BOOST_AUTO_TEST_CASE(to_converts_and_keeps_shape) {
  const std::vector<float> v = {1.0f, -2.5f, 65504.0f, 1e6f, 0.1f, 3.5f};
  const Tensor t = Tensor::from_floats({3, 2}, v);

  // float16: the raw patterns are float_to_half of each value (1e6 overflows to infinity).
  const Tensor h = t.to(DType::F16);
  BOOST_TEST((h.dtype() == DType::F16));
  BOOST_TEST((h.shape() == t.shape()));
  BOOST_TEST(h.nbytes() == 12u);
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, h.bytes().data() + 2 * i, 2);
    BOOST_TEST(bits == loco::float_to_half(v[i]), "element " << i);
  }
  const Tensor back = h.to(DType::F32);
  const std::vector<float> want = {1.0f, -2.5f, 65504.0f, INFINITY, loco::half_to_float(0x2e66), 3.5f};
  for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(back.f32()[i] == want[i], "element " << i);

  const Tensor b = t.to(DType::BF16);
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, b.bytes().data() + 2 * i, 2);
    BOOST_TEST(bits == loco::float_to_bfloat16(v[i]), "element " << i);
  }

  const Tensor d = t.to(DType::F64);
  for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(d.as<double>()[i] == static_cast<double>(v[i]));

  const Tensor n = t.to(DType::I32);  // rounds to nearest even
  const std::vector<std::int32_t> ints = {1, -2, 65504, 1000000, 0, 4};
  for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(n.as<std::int32_t>()[i] == ints[i], "element " << i);
  const Tensor s8 = t.to(DType::I8);  // saturates
  const std::vector<std::int8_t> bytes = {1, -2, 127, 127, 0, 4};
  for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(s8.as<std::int8_t>()[i] == bytes[i], "element " << i);

  // clone: equal bytes, separate storage.
  Tensor c = t.clone();
  BOOST_TEST((c.shape() == t.shape()));
  BOOST_TEST(std::memcmp(c.bytes().data(), t.bytes().data(), t.nbytes()) == 0);
  BOOST_TEST(c.bytes().data() != t.bytes().data());
  c.f32()[0] = 42.0f;
  BOOST_TEST(t.f32()[0] == 1.0f);
}

BOOST_AUTO_TEST_CASE(reshape_keeps_bytes) {
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  Tensor t = Tensor::from_floats({2, 3}, v);
  const std::byte* data = t.bytes().data();
  t.reshape({3, 2});
  BOOST_TEST((t.shape() == Shape{3, 2}));
  t.reshape({6});
  BOOST_TEST(t.rank() == 1);
  t.reshape({1, 6, 1});
  BOOST_TEST(t.numel() == 6);
  BOOST_TEST(t.bytes().data() == data);
  for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(t.f32()[i] == v[i]);
  BOOST_CHECK_THROW(t.reshape({4, 2}), loco::Error);
  BOOST_CHECK_THROW(t.reshape({}), loco::Error);
  BOOST_TEST(throws([&] { t.reshape({-6}); }, ErrorKind::BadInput));
  BOOST_TEST(throws([&] { t.reshape({-2, -3}); }, ErrorKind::BadInput));
  BOOST_TEST((t.shape() == Shape{1, 6, 1}));  // a failed reshape leaves the shape alone
}

BOOST_AUTO_TEST_CASE(typed_access_checks_dtype) {
  Tensor f({4});
  BOOST_TEST(f.as<float>().size() == 4u);
  BOOST_TEST(throws([&] { (void)f.as<double>(); }, ErrorKind::Internal, "float32"));
  BOOST_TEST(throws([&] { (void)f.as<std::int32_t>(); }, ErrorKind::Internal));
  Tensor h({4}, DType::F16);
  BOOST_TEST(throws([&] { (void)h.f32(); }, ErrorKind::Internal, "float16"));
  BOOST_TEST(throws([&] { (void)h.as<std::uint16_t>(); }, ErrorKind::Internal));  // uint16 is U16, not F16
  const Tensor& ch = h;
  BOOST_TEST(throws([&] { (void)ch.f32(); }, ErrorKind::Internal));
  Tensor i({2}, DType::I64);
  BOOST_TEST(i.as<std::int64_t>().size() == 2u);
  BOOST_TEST(throws([&] { (void)i.as<std::uint64_t>(); }, ErrorKind::Internal));
}

BOOST_AUTO_TEST_CASE(tensor_set_order_and_lookup) {
  loco::TensorSet set;
  BOOST_TEST(set.empty());
  const std::vector<std::string> names = {"z.weight", "a.bias", "m.0.weight", "b"};
  for (std::size_t k = 0; k < names.size(); ++k) {
    Tensor& added = set.add(names[k], Tensor({static_cast<std::int64_t>(k + 1), 2}));
    added.f32()[0] = static_cast<float>(k);
  }
  BOOST_TEST(set.size() == names.size());
  BOOST_TEST(!set.empty());
  std::size_t k = 0;
  for (const auto& e : set) {  // insertion order, not sorted
    BOOST_TEST(e.name == names[k]);
    BOOST_TEST(e.tensor.f32()[0] == static_cast<float>(k));
    ++k;
  }
  BOOST_TEST(set[2].name == "m.0.weight");
  BOOST_TEST(set.contains("a.bias"));
  BOOST_TEST(!set.contains("a.weight"));
  BOOST_TEST(set.at("m.0.weight").numel() == 6);
  set.at("b").f32()[1] = 5.0f;
  const loco::TensorSet& cset = set;
  BOOST_TEST(cset.at("b").f32()[1] == 5.0f);
  BOOST_TEST(set.numel() == 2 + 4 + 6 + 8);

  BOOST_TEST(throws([&] { set.add("a.bias", Tensor({1})); }, ErrorKind::BadInput, "a.bias"));
  BOOST_TEST(set.size() == names.size());  // the duplicate was not appended
  BOOST_TEST(set.at("a.bias").numel() == 4);
  BOOST_TEST(throws([&] { set.at("missing.weight"); }, ErrorKind::BadInput, "missing.weight"));
  BOOST_TEST(throws([&] { cset.at("also.missing"); }, ErrorKind::BadInput, "also.missing"));
}

BOOST_AUTO_TEST_SUITE_END()
