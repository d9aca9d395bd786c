// GGUF reader and writer: dequantization against hand-computed values, sink -> source round trips,
// key/values through attributes, refusals, and every truncation of a valid file.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/gguf.hpp"
#include "loco/io/sink.hpp"

using loco::Attributes;
using loco::DType;
using loco::Error;
using loco::ErrorKind;
using loco::io::TensorInfo;

namespace {

// A GGUF image built field by field (little-endian, as the spec lays it out).
struct Image {
  std::vector<std::byte> b;
  template <typename T>
  Image& put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    b.insert(b.end(), p, p + sizeof v);
    return *this;
  }
  Image& str(std::string_view s) {
    put<std::uint64_t>(s.size());
    for (char c : s) b.push_back(static_cast<std::byte>(c));
    return *this;
  }
  Image& pad(std::size_t a) {
    b.resize((b.size() + a - 1) / a * a);
    return *this;
  }
};

std::unique_ptr<loco::io::TensorSource> open(const std::vector<std::byte>& b) {
  return loco::io::open_gguf(loco::io::memory_bytes(b, "<test>"));
}

std::vector<float> floats(const loco::Tensor& t) {
  std::vector<float> v(static_cast<std::size_t>(t.numel()));
  std::memcpy(v.data(), t.bytes().data(), v.size() * 4);
  return v;
}

template <typename F>
ErrorKind kind_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  return ErrorKind::Internal;  // did not throw
}

std::string scratch(const std::string& name) {
  return (std::filesystem::temp_directory_path() / fmt::format("loco-gguf-test-{}-{}", ::getpid(), name)).string();
}

// Q8_0 (d = 0.5, q = j - 16), Q4_0 (d = 0.25, byte j = j | (15 - j) << 4) and Q4_1 (d = 2, m = -1, same
// bytes), one block each, as rank-1 tensors of 32 elements; f16 0.5 = 0x3800, 0.25 = 0x3400, 2 = 0x4000,
// -1 = 0xBC00.
std::vector<std::byte> quantized_file() {
  Image h;
  h.b = {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}};
  h.put<std::uint32_t>(3).put<std::uint64_t>(3).put<std::uint64_t>(0);
  const std::pair<const char*, std::uint32_t> infos[] = {{"q8", 8}, {"q40", 2}, {"q41", 3}};
  std::uint64_t offset = 0;
  for (const auto& [name, type] : infos) {
    h.str(name).put<std::uint32_t>(1).put<std::uint64_t>(32).put(type).put(offset);
    offset += 64;  // 34, 18 and 20 bytes, each padded to 32
  }
  h.pad(32);
  Image d;
  d.put<std::uint16_t>(0x3800);
  for (int j = 0; j < 32; ++j) d.put(static_cast<std::int8_t>(j - 16));
  d.pad(64).put<std::uint16_t>(0x3400);
  for (int j = 0; j < 16; ++j) d.put(static_cast<std::uint8_t>(j | (15 - j) << 4));
  d.pad(64).put<std::uint16_t>(0x4000).put<std::uint16_t>(0xBC00);
  for (int j = 0; j < 16; ++j) d.put(static_cast<std::uint8_t>(j | (15 - j) << 4));
  d.pad(32);
  h.b.insert(h.b.end(), d.b.begin(), d.b.end());
  return h.b;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gguf)

BOOST_AUTO_TEST_CASE(dequantizes_as_ggml_defines) {
  auto src = open(quantized_file());
  BOOST_TEST(src->format() == "gguf");
  std::vector<float> q8, q40, q41;
  for (int j = 0; j < 32; ++j) q8.push_back(0.5f * static_cast<float>(j - 16));
  for (int j = 0; j < 32; ++j) q40.push_back(0.25f * static_cast<float>((j < 16 ? j : 31 - j) - 8));
  for (int j = 0; j < 32; ++j) q41.push_back(2.0f * static_cast<float>(j < 16 ? j : 31 - j) - 1.0f);
  const std::pair<const char*, std::vector<float>*> want[] = {{"q8", &q8}, {"q40", &q40}, {"q41", &q41}};
  for (const auto& [name, values] : want) {
    const TensorInfo& t = src->get(name);
    BOOST_TEST((t.dtype == DType::F32));
    BOOST_TEST(floats(src->read(t)) == *values, boost::test_tools::per_element());
    // Rows 5 at a time: blocks are entered in the middle.
    for (std::int64_t r = 0; r < 32; r += 5) {
      const std::int64_t n = std::min<std::int64_t>(5, 32 - r);
      std::vector<float> part(static_cast<std::size_t>(n));
      src->read_rows(t, r, n, std::as_writable_bytes(std::span(part)));
      BOOST_TEST(part == std::vector<float>(values->begin() + r, values->begin() + r + n),
                 boost::test_tools::per_element());
    }
  }
}

BOOST_AUTO_TEST_CASE(every_truncation_is_refused_or_complete) {
  const auto full = quantized_file();
  const std::size_t data_end = full.size() - 32 + 20;  // the last block ends 12 bytes before the padding
  for (std::size_t n = 0; n < full.size(); ++n) {
    const std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    if (n >= data_end) {
      BOOST_TEST(open(cut)->tensors().size() == 3u);
    } else {
      BOOST_TEST((kind_of([&] { open(cut); }) == ErrorKind::BadInput), "prefix of " << n << " bytes");
    }
  }
}

BOOST_AUTO_TEST_CASE(sink_round_trip_shapes_types_and_key_values) {
  const std::string path = scratch("rt.gguf");
  std::vector<TensorInfo> plan = {
      {"tensors", "scalar", {}, DType::F32, {}}, {"tensors", "v", {3}, DType::F16, {}},
      {"tensors", "m", {2, 3}, DType::BF16, {}}, {"tensors", "r4", {1, 2, 1, 3}, DType::F64, {}},
      {"tensors", "i", {2}, DType::I8, {}},      {"tensors", "e", {0, 5}, DType::I64, {}}};
  // Key/values in the reader's own JSON form, so the text comes back unchanged (file_type 32: most
  // float elements are bfloat16).
  const std::string meta =
      R"([{"key":"general.alignment","type":"u32","value":64},{"key":"general.file_type","type":"u32","value":32},)"
      R"({"key":"a.f32","type":"f32","value":0.1},{"key":"a.nan","type":"f64","value":"nan"},)"
      R"({"key":"a.b","type":"bool","value":true},{"key":"a.s","type":"str","value":{"hex":"ff00"}},)"
      R"({"key":"a.arr","type":"arr","items":"arr","value":[{"items":"i16","value":[-1,2]},{"items":"str","value":[]}]}])";
  Attributes root;
  root.set("gguf_metadata", meta);
  root.set("round", std::int64_t{7});
  root.set("dims", std::vector<double>{0.5, -2});
  {
    auto sink = loco::io::create_sink(path, root, plan);
    BOOST_TEST((kind_of([&] { sink->set_attribute("x", std::int64_t{1}); }) == ErrorKind::Usage));
    for (std::size_t i = plan.size(); i-- > 0;) {  // last tensor first, rows one at a time from the end
      const std::size_t row = static_cast<std::size_t>(plan[i].row_elements()) * loco::dtype_size(plan[i].dtype);
      for (std::int64_t r = plan[i].rows(); r-- > 0;) {
        std::vector<std::byte> bytes(row);
        for (std::size_t k = 0; k < row; ++k)
          bytes[k] = static_cast<std::byte>(i * 16 + static_cast<std::size_t>(r) + k);
        sink->write_rows(i, r, 1, bytes);
      }
    }
    sink->commit();
  }
  auto src = loco::io::open_source(path, false);
  BOOST_TEST(src->format() == "gguf");
  BOOST_TEST(*src->attributes().get_string("gguf_metadata") == meta);
  BOOST_TEST(*src->attributes().get_int("round") == 7);
  BOOST_TEST(std::get<std::vector<double>>(*src->attributes().find("dims")) == (std::vector<double>{0.5, -2}));
  BOOST_REQUIRE(src->tensors().size() == plan.size());
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const TensorInfo& t = src->tensors()[i];
    BOOST_TEST(t.name == plan[i].name);
    BOOST_TEST(t.shape == plan[i].shape);
    BOOST_TEST((t.dtype == plan[i].dtype));
    const loco::Tensor got = src->read(t);
    const std::size_t row = static_cast<std::size_t>(t.row_elements()) * loco::dtype_size(t.dtype);
    for (std::size_t k = 0; k < got.bytes().size(); ++k)
      BOOST_TEST((got.bytes()[k] == static_cast<std::byte>(i * 16 + k / row + k % row)));
  }
  std::filesystem::remove(path);
}

BOOST_AUTO_TEST_CASE(file_type_follows_the_written_tensors) {
  const std::string path = scratch("ft.gguf");
  Attributes root;
  root.set("gguf_metadata", std::string(R"([{"key":"general.file_type","type":"u32","value":2}])"));
  for (const auto& [dtype, ftype] : {std::pair{DType::F32, 0}, std::pair{DType::F16, 1}, std::pair{DType::BF16, 32}}) {
    auto sink = loco::io::create_sink(path, root, {{"tensors", "w", {2}, dtype, {}}});
    sink->write(0, loco::Tensor({2}, dtype));
    sink->commit();
    const auto src = loco::io::open_source(path, false);
    BOOST_TEST(*src->attributes().get_string("gguf_metadata") ==
               fmt::format(R"([{{"key":"general.file_type","type":"u32","value":{}}}])", ftype));
  }
  std::filesystem::remove(path);
}

BOOST_AUTO_TEST_CASE(refusals_leave_nothing) {
  const std::string path = scratch("bad.gguf");
  auto make = [&](std::vector<TensorInfo> plan, Attributes root = {}) {
    return kind_of([&] { loco::io::create_sink(path, root, std::move(plan)); });
  };
  BOOST_TEST((make({{"tensors", "u", {2}, DType::U8, {}}}) == ErrorKind::Usage));
  BOOST_TEST((make({{"tensors", "r5", {1, 1, 1, 1, 1}, DType::F32, {}}}) == ErrorKind::Usage));
  BOOST_TEST((make({{"tensors", std::string(64, 'x'), {1}, DType::F32, {}}}) == ErrorKind::Usage));
  BOOST_TEST((make({{"state", "m", {1}, DType::F32, {}}}) == ErrorKind::Usage));
  Attributes bad;
  bad.set("gguf_metadata", std::string(R"({"key":"a"})"));
  BOOST_TEST((make({}, bad) == ErrorKind::BadInput));
  bad.set("gguf_metadata", std::string(R"([{"key":"general.alignment","type":"u32","value":3}])"));
  BOOST_TEST((make({}, bad) == ErrorKind::BadInput));
  bad.set("gguf_metadata", std::string(R"([{"key":"a","type":"u8","value":256}])"));
  BOOST_TEST((make({}, bad) == ErrorKind::BadInput));
  bad.set("gguf_metadata", std::string(R"([{"key":"loco.x","type":"i64","value":1}])"));
  bad.set("x", std::int64_t{2});
  BOOST_TEST((make({}, bad) == ErrorKind::Usage));
  BOOST_TEST(!std::filesystem::exists(path));
}

BOOST_AUTO_TEST_SUITE_END()
