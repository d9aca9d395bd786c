// safetensors reader and writer: round trips, byte-exact output and every rejection rule.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/safetensors.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace fs = std::filesystem;
using loco::DType;
using loco::Error;
using loco::ErrorKind;
using loco::Shape;
using loco::io::TensorInfo;

namespace {

using Bytes = std::vector<std::byte>;

// A scratch folder removed at the end of the test.
struct TempDir {
  fs::path dir;
  TempDir() {
    static int counter = 0;
    dir = fs::temp_directory_path() / fmt::format("loco-st-test-{}-{}", ::getpid(), counter++);
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  std::size_t entries() const { return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), {})); }
};

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  BOOST_REQUIRE(in);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Bytes out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

Bytes le64(std::uint64_t v) {
  Bytes b(8);
  for (int i = 0; i < 8; ++i) b[i] = std::byte((v >> (8 * i)) & 0xFF);
  return b;
}

// [N][header][data] with N the header's length unless given.
Bytes st_file(std::string_view header, std::size_t data_bytes, std::optional<std::uint64_t> n = std::nullopt) {
  Bytes out = le64(n.value_or(header.size()));
  for (char c : header) out.push_back(std::byte(static_cast<unsigned char>(c)));
  for (std::size_t i = 0; i < data_bytes; ++i) out.push_back(std::byte(i * 7 + 1));
  return out;
}

std::unique_ptr<loco::io::TensorSource> open_mem(Bytes bytes) {
  return loco::io::open_safetensors(loco::io::memory_bytes(std::move(bytes), "hostile.safetensors"));
}

// Opening must fail with Error(kind) whose message names the file and contains `part`.
void expect_rejected(Bytes bytes, std::string_view part, ErrorKind kind = ErrorKind::BadInput) {
  try {
    auto src = open_mem(std::move(bytes));
    BOOST_ERROR("accepted a file that should be rejected for: " << part);
  } catch (const Error& e) {
    const std::string what = e.what();
    BOOST_TEST_INFO("message: " << what);
    BOOST_CHECK(e.kind() == kind);
    BOOST_CHECK(what.find("hostile.safetensors") != std::string::npos);
    BOOST_CHECK_MESSAGE(what.find(part) != std::string::npos, "expected '" << part << "' in: " << what);
  }
}

template <typename F>
void expect_error(F&& f, ErrorKind kind, std::string_view part) {
  try {
    f();
    BOOST_ERROR("no error; expected one containing: " << part);
  } catch (const Error& e) {
    const std::string what = e.what();
    BOOST_CHECK(e.kind() == kind);
    BOOST_CHECK_MESSAGE(what.find(part) != std::string::npos, "expected '" << part << "' in: " << what);
  }
}

// Deterministic element bytes for tensor k (bools as 0/1).
Bytes pattern(const TensorInfo& t, int k) {
  Bytes b(static_cast<std::size_t>(t.numel()) * loco::dtype_size(t.dtype));
  for (std::size_t i = 0; i < b.size(); ++i)
    b[i] = t.dtype == DType::Bool ? std::byte((i + k) % 2) : std::byte((i * 37 + k * 11 + 5) & 0xFF);
  return b;
}

void write_all(loco::io::TensorSink& sink, const std::vector<Bytes>& data) {
  for (std::size_t i = 0; i < data.size(); ++i) sink.write_rows(i, 0, sink.plan()[i].rows(), data[i]);
}

Bytes tensor_bytes(const loco::io::TensorSource& src, const TensorInfo& t) {
  loco::Tensor x = src.read(t);
  return Bytes(x.bytes().begin(), x.bytes().end());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(safetensors)

BOOST_AUTO_TEST_CASE(round_trip_every_dtype_with_zero_size_and_rank_zero) {
  TempDir tmp;
  std::vector<TensorInfo> plan;
  for (DType d : loco::kAllDTypes) {
    const std::string n(loco::dtype_name(d));
    plan.push_back({"tensors", n + ".matrix", Shape{3, 2}, d, {}});
    plan.push_back({"tensors", n + ".scalar", Shape{}, d, {}});
    plan.push_back({"tensors", n + ".empty", Shape{0}, d, {}});
    plan.push_back({"tensors", n + ".empty_rows", Shape{4, 0, 3}, d, {}});
  }
  std::vector<Bytes> data;
  for (std::size_t i = 0; i < plan.size(); ++i) data.push_back(pattern(plan[i], static_cast<int>(i)));

  loco::Attributes root;
  root.set("format", std::string("pt"));
  root.set("round", std::int64_t{12});
  root.set("lr", 0.5);
  const std::string path = tmp.path("all.safetensors");
  auto sink = loco::io::create_safetensors_sink(path, root, plan);
  write_all(*sink, data);
  sink->commit();

  auto src = loco::io::open_safetensors(loco::io::open_bytes(path));
  BOOST_TEST(src->format() == "safetensors");
  BOOST_TEST(src->path() == path);
  BOOST_TEST(src->attributes().size() == 3u);
  BOOST_TEST(src->attributes().get_string("format").value_or("") == "pt");
  BOOST_TEST(src->attributes().get_int("round").value_or(0) == 12);  // typed again (io/metadata.hpp)
  BOOST_TEST(src->attributes().get_double("lr").value_or(0) == 0.5);
  BOOST_TEST(!src->attributes().get_string("lr"));
  BOOST_REQUIRE(src->tensors().size() == plan.size());
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const TensorInfo* t = src->find(plan[i].name);
    BOOST_REQUIRE_MESSAGE(t != nullptr, plan[i].name);
    BOOST_TEST(t->group == "tensors");
    BOOST_TEST(t->shape == plan[i].shape);
    BOOST_TEST(static_cast<int>(t->dtype) == static_cast<int>(plan[i].dtype));
    BOOST_TEST(tensor_bytes(*src, *t) == data[i], plan[i].name);
  }
  // Listed in offset order, which is the writer's order: dtype rank descending, then name.
  BOOST_TEST(src->tensors().front().name == "uint64.empty");
  BOOST_TEST(src->tensors().back().name == "bool.scalar");
}

BOOST_AUTO_TEST_CASE(golden_bytes_derived_by_hand) {
  // Plan: a U8 [3], b F32 [2], c I64 [] (rank 0), z F16 [0,2] (zero size).
  // Writer order, by descending dtype rank (I64 > F32 > F16 > U8) then name: c, b, z, a.
  // Offsets back to back: c [0,8], b [8,16], z [16,16], a [16,19].
  // __metadata__ first, keys sorted: format, loco_attribute_types (step is an int64: {"step":"int64"}
  // as an escaped string), note (escaped: \" \n \u0001, é as raw UTF-8), step (int → "3").
  // JSON is 329 bytes; 7 spaces pad it to 336 = 0x150; the file is 8 + 336 + 19 = 363 bytes.
  TempDir tmp;
  std::vector<TensorInfo> plan = {{"tensors", "a", Shape{3}, DType::U8, {}},
                                  {"tensors", "b", Shape{2}, DType::F32, {}},
                                  {"tensors", "c", Shape{}, DType::I64, {}},
                                  {"tensors", "z", Shape{0, 2}, DType::F16, {}}};
  loco::Attributes root;
  root.set("step", std::int64_t{3});
  root.set("format", std::string("pt"));
  root.set("note", std::string("q\"\n\x01\xc3\xa9"));
  const std::string path = tmp.path("golden.safetensors");
  auto sink = loco::io::create_safetensors_sink(path, root, plan);
  const std::uint8_t a[] = {1, 2, 3};
  const float b[] = {1.0f, -2.0f};
  const std::int64_t c = 7;
  sink->write_rows(2, 0, 1, std::as_bytes(std::span(&c, 1)));
  sink->write_rows(0, 0, 3, std::as_bytes(std::span(a)));
  sink->write_rows(3, 0, 0, {});
  sink->write_rows(1, 0, 2, std::as_bytes(std::span(b)));
  sink->commit();

  const std::string header =
      "{\"__metadata__\":{\"format\":\"pt\",\"loco_attribute_types\":\"{\\\"step\\\":\\\"int64\\\"}\",\"note\":"
      "\"q\\\"\\n\\u0001\xc3\xa9\",\"step\":\"3\"},"
      "\"c\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
      "\"z\":{\"dtype\":\"F16\",\"shape\":[0,2],\"data_offsets\":[16,16]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]}}"
      "       ";
  BOOST_REQUIRE(header.size() == 336u);
  Bytes want = {std::byte{0x50}, std::byte{0x01}, std::byte{0}, std::byte{0},
                std::byte{0},    std::byte{0},    std::byte{0}, std::byte{0}};
  for (char ch : header) want.push_back(std::byte(static_cast<unsigned char>(ch)));
  for (int v : {7, 0, 0, 0, 0, 0, 0, 0,                          // c = 7 (int64 LE)
                0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0,  // b = 1.0f, -2.0f
                1, 2, 3})                                        // a
    want.push_back(std::byte(v));
  BOOST_REQUIRE(want.size() == 363u);
  BOOST_TEST(read_file(path) == want);
}

BOOST_AUTO_TEST_CASE(reference_alignment_and_empty_file_bytes) {
  TempDir tmp;
  // Empty tensor set, no metadata: N = 8, "{}" and six spaces.
  {
    auto sink = loco::io::create_safetensors_sink(tmp.path("empty.safetensors"), {}, {});
    sink->commit();
    Bytes want = le64(8);
    for (char ch : std::string("{}      ")) want.push_back(std::byte(ch));
    BOOST_TEST(read_file(tmp.path("empty.safetensors")) == want);
    auto src = loco::io::open_safetensors(loco::io::open_bytes(tmp.path("empty.safetensors")));
    BOOST_TEST(src->tensors().empty());
    BOOST_TEST(src->attributes().empty());
  }
  // One F32 [1,1,2,3]: 65 bytes of JSON padded with 7 spaces to 72, then the data at offset 80.
  {
    std::vector<TensorInfo> plan = {{"tensors", "attn0", Shape{1, 1, 2, 3}, DType::F32, {}}};
    auto sink = loco::io::create_safetensors_sink(tmp.path("attn.safetensors"), {}, plan);
    const float v[] = {0, 1, 2, 3, 4, 5};
    sink->write_rows(0, 0, 1, std::as_bytes(std::span(v)));
    sink->commit();
    const std::string json = R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})";
    BOOST_REQUIRE(json.size() == 65u);
    Bytes want = le64(72);
    for (char ch : json + "       ") want.push_back(std::byte(ch));
    for (std::byte b : std::as_bytes(std::span(v))) want.push_back(b);
    BOOST_TEST(read_file(tmp.path("attn.safetensors")) == want);
  }
}

BOOST_AUTO_TEST_CASE(rows_in_any_order_give_the_same_file) {
  TempDir tmp;
  std::vector<TensorInfo> plan = {{"tensors", "w", Shape{7, 5}, DType::F32, {}},
                                  {"tensors", "v", Shape{4, 3, 2}, DType::BF16, {}}};
  std::vector<Bytes> data = {pattern(plan[0], 1), pattern(plan[1], 2)};
  auto in_order = loco::io::create_safetensors_sink(tmp.path("a.safetensors"), {}, plan);
  write_all(*in_order, data);
  in_order->commit();

  auto shuffled = loco::io::create_safetensors_sink(tmp.path("b.safetensors"), {}, plan);
  const std::size_t w_row = 5 * 4, v_row = 3 * 2 * 2;
  const std::span<const std::byte> w(data[0]), v(data[1]);
  shuffled->write_rows(1, 2, 2, v.subspan(2 * v_row, 2 * v_row));
  shuffled->write_rows(0, 5, 2, w.subspan(5 * w_row, 2 * w_row));
  shuffled->write_rows(0, 0, 1, w.subspan(0, w_row));
  shuffled->write_rows(1, 0, 2, v.subspan(0, 2 * v_row));
  shuffled->write_rows(0, 3, 2, w.subspan(3 * w_row, 2 * w_row));
  shuffled->write_rows(0, 1, 2, w.subspan(1 * w_row, 2 * w_row));
  shuffled->commit();
  BOOST_TEST(read_file(tmp.path("a.safetensors")) == read_file(tmp.path("b.safetensors")));
}

BOOST_AUTO_TEST_CASE(rows_written_from_several_threads_give_the_same_file) {
  TempDir tmp;
  std::vector<TensorInfo> plan = {{"tensors", "w", Shape{64, 33}, DType::F64, {}}};
  const Bytes data = pattern(plan[0], 9);
  auto serial = loco::io::create_safetensors_sink(tmp.path("a.safetensors"), {}, plan);
  serial->write_rows(0, 0, 64, data);
  serial->commit();

  auto parallel = loco::io::create_safetensors_sink(tmp.path("b.safetensors"), {}, plan);
  const std::size_t row = 33 * 8;
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (std::int64_t r = k; r < 64; r += 4)
        parallel->write_rows(0, r, 1, std::span(data).subspan(static_cast<std::size_t>(r) * row, row));
    });
  for (auto& th : threads) th.join();
  parallel->commit();
  BOOST_TEST(read_file(tmp.path("a.safetensors")) == read_file(tmp.path("b.safetensors")));
}

BOOST_AUTO_TEST_CASE(row_block_reads_equal_whole_reads) {
  TempDir tmp;
  std::vector<TensorInfo> plan = {{"tensors", "w", Shape{7, 5}, DType::F32, {}},
                                  {"tensors", "v", Shape{4, 3, 2}, DType::BF16, {}},
                                  {"tensors", "s", Shape{}, DType::F64, {}},
                                  {"tensors", "e", Shape{6, 0}, DType::I32, {}}};
  std::vector<Bytes> data;
  for (std::size_t i = 0; i < plan.size(); ++i) data.push_back(pattern(plan[i], static_cast<int>(i)));
  const std::string path = tmp.path("rows.safetensors");
  auto sink = loco::io::create_safetensors_sink(path, {}, plan);
  write_all(*sink, data);
  sink->commit();

  auto src = loco::io::open_safetensors(loco::io::open_bytes(path));
  for (const TensorInfo& t : src->tensors()) {
    const Bytes whole = tensor_bytes(*src, t);
    const std::size_t row_bytes = static_cast<std::size_t>(t.row_elements()) * loco::dtype_size(t.dtype);
    for (std::int64_t block = 1; block <= 3; ++block) {
      Bytes joined;
      for (std::int64_t r = 0; r < t.rows(); r += block) {
        const std::int64_t n = std::min(block, t.rows() - r);
        Bytes part(static_cast<std::size_t>(n) * row_bytes);
        src->read_rows(t, r, n, part);
        joined.insert(joined.end(), part.begin(), part.end());
      }
      BOOST_TEST(joined == whole, t.name << " in blocks of " << block);
    }
    const auto it = std::find_if(plan.begin(), plan.end(), [&](const TensorInfo& p) { return p.name == t.name; });
    BOOST_TEST(whole == data[static_cast<std::size_t>(it - plan.begin())]);
  }
  const TensorInfo& w = src->get("w");
  Bytes two_rows(2 * 5 * 4);
  expect_error([&] { src->read_rows(w, 6, 2, two_rows); }, ErrorKind::Internal, "outside its 7 rows");
  Bytes short_buffer(5);
  expect_error([&] { src->read_rows(w, 0, 1, short_buffer); }, ErrorKind::Internal, "needs 20 bytes");
}

BOOST_AUTO_TEST_CASE(written_to_stdout_matches_the_file) {
  TempDir tmp;
  std::vector<TensorInfo> plan = {{"tensors", "w", Shape{3, 2}, DType::F16, {}}};
  const Bytes data = pattern(plan[0], 4);
  loco::Attributes root;
  root.set("format", std::string("pt"));
  auto file_sink = loco::io::create_safetensors_sink(tmp.path("f.safetensors"), root, plan);
  file_sink->write_rows(0, 0, 3, data);
  file_sink->commit();

  std::cout.flush();
  std::fflush(stdout);
  const int saved = ::dup(STDOUT_FILENO);
  const int fd = ::open(tmp.path("stdout.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  BOOST_REQUIRE(saved >= 0 && fd >= 0);
  ::dup2(fd, STDOUT_FILENO);
  ::close(fd);
  try {
    auto out_sink = loco::io::create_safetensors_sink("-", root, plan);
    out_sink->write_rows(0, 0, 3, data);
    out_sink->commit();
  } catch (...) {
    ::dup2(saved, STDOUT_FILENO);
    ::close(saved);
    throw;
  }
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  BOOST_TEST(read_file(tmp.path("stdout.bin")) == read_file(tmp.path("f.safetensors")));
}

BOOST_AUTO_TEST_CASE(open_source_and_create_sink_reach_safetensors) {
  TempDir tmp;
  std::vector<TensorInfo> plan = {{"tensors", "w", Shape{2, 2}, DType::F32, {}}};
  const Bytes data = pattern(plan[0], 3);
  const std::string path = tmp.path("m.safetensors");
  auto sink = loco::io::create_sink(path, {}, plan);  // format from the extension
  sink->write_rows(0, 0, 2, data);
  sink->commit();
  // Detection is by content, not by name.
  fs::copy_file(path, tmp.path("misnamed.h5"));
  for (const std::string& p : {path, tmp.path("misnamed.h5")}) {
    auto src = loco::io::open_source(p);
    BOOST_TEST(src->format() == "safetensors");
    BOOST_TEST(tensor_bytes(*src, src->get("w")) == data);
  }
}

BOOST_AUTO_TEST_CASE(sink_refuses_what_the_format_cannot_hold) {
  TempDir tmp;
  const std::string path = tmp.path("x.safetensors");
  expect_error(
      [&] {
        loco::io::create_safetensors_sink(path, {}, {{"state/exp_avg", "w", Shape{2}, DType::F32, {}}});
      },
      ErrorKind::Usage, "safetensors holds only model tensors");
  expect_error(
      [&] {
        loco::io::create_safetensors_sink(
            path, {}, {{"tensors", "w", Shape{2}, DType::F32, {}}, {"tensors", "w", Shape{3}, DType::F16, {}}});
      },
      ErrorKind::Usage, "planned twice");
  expect_error(
      [&] {
        loco::io::create_safetensors_sink(path, {}, {{"tensors", "__metadata__", Shape{2}, DType::F32, {}}});
      },
      ErrorKind::Usage, "reserved");
  expect_error(
      [&] {
        loco::io::create_safetensors_sink(path, {}, {{"tensors", "w", Shape{std::int64_t{1} << 48}, DType::U8, {}}});
      },
      ErrorKind::Usage, "2^48-1");
  expect_error(
      [&] {
        loco::io::create_safetensors_sink(path, {}, {{"tensors", "bad\xff", Shape{2}, DType::F32, {}}});
      },
      ErrorKind::BadInput, "UTF-8");
  BOOST_TEST(tmp.entries() == 0u);
}

BOOST_AUTO_TEST_CASE(sink_takes_no_attributes_after_creation) {
  TempDir tmp;
  auto sink =
      loco::io::create_safetensors_sink(tmp.path("x.safetensors"), {}, {{"tensors", "w", Shape{2}, DType::F32, {}}});
  expect_error([&] { sink->set_attribute("format", std::string("pt")); }, ErrorKind::Usage, "header precedes the data");
  expect_error([&] { sink->set_group_attribute("state", "step", std::int64_t{1}); }, ErrorKind::Usage, "no groups");
}

BOOST_AUTO_TEST_CASE(sink_checks_every_row_once_and_leaves_nothing_uncommitted) {
  TempDir tmp;
  const std::string path = tmp.path("x.safetensors");
  {
    std::vector<TensorInfo> plan = {{"tensors", "w", Shape{4, 2}, DType::F32, {}}};
    auto sink = loco::io::create_safetensors_sink(path, {}, plan);
    const Bytes rows(2 * 2 * 4);
    sink->write_rows(0, 1, 2, rows);
    expect_error([&] { sink->write_rows(0, 2, 2, rows); }, ErrorKind::Internal, "second time");
    expect_error([&] { sink->write_rows(0, 3, 2, rows); }, ErrorKind::Internal, "outside its 4 rows");
    expect_error([&] { sink->write_rows(0, 0, 1, rows); }, ErrorKind::Internal, "expected 8");
    expect_error([&] { sink->write_rows(1, 0, 1, rows); }, ErrorKind::Internal, "outside the plan");
    expect_error([&] { sink->commit(); }, ErrorKind::Internal, "only 2 of its 4 rows");
    BOOST_TEST(tmp.entries() == 1u);  // the temporary file
  }
  BOOST_TEST(tmp.entries() == 0u);  // destroyed without commit: nothing under any name
  BOOST_TEST(!fs::exists(path));
}

// ---------------------------------------------------------------------------------------------
// Hostile files: every rule of the reader.

BOOST_AUTO_TEST_CASE(accepts_minimal_valid_files) {
  {
    auto src = open_mem(st_file("{}", 0));
    BOOST_TEST(src->tensors().empty());
  }
  {  // leading whitespace, null metadata, a zero-size tensor and a rank-0 tensor
    auto src = open_mem(st_file(
        R"(  {"__metadata__":null,"e":{"dtype":"I32","shape":[2,0],"data_offsets":[0,0]},"s":{"shape":[],"dtype":"U16","data_offsets":[0,2]}} )",
        2));
    BOOST_REQUIRE(src->tensors().size() == 2u);
    BOOST_TEST(src->tensors()[0].name == "e");
    BOOST_TEST(src->tensors()[1].name == "s");
    BOOST_TEST(src->tensors()[1].shape.empty());
    BOOST_TEST(src->attributes().empty());
  }
  {  // metadata in header order; tensors in offset order, not header order
    auto src = open_mem(st_file(
        R"({"y":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"__metadata__":{"z":"1","a":"2"},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
        2));
    BOOST_TEST(src->tensors()[0].name == "x");
    BOOST_TEST(src->tensors()[1].name == "y");
    BOOST_TEST(src->attributes().begin()->name == "z");
  }
}

BOOST_AUTO_TEST_CASE(rejects_bad_length_prefixes) {
  expect_rejected(Bytes(7, std::byte{0}), "shorter than the 8-byte");
  expect_rejected(st_file("{}", 0, 100'000'001), "over the 100000000-byte limit");
  expect_rejected(st_file("{}", 0, ~std::uint64_t{0}), "over the 100000000-byte limit");
  expect_rejected(st_file("{}", 40, 100), "runs past the end");
  expect_rejected(st_file("", 0), "not valid JSON");  // N = 0: an empty header
}

BOOST_AUTO_TEST_CASE(rejects_headers_that_are_not_utf8_or_json) {
  expect_rejected(st_file("{\"a\xff\":1}", 0), "not valid UTF-8");
  expect_rejected(st_file("{\"\xc0\xaf\":1}", 0), "not valid UTF-8");          // overlong '/'
  expect_rejected(st_file("{\"\xed\xa0\x80\":1}", 0), "not valid UTF-8");      // surrogate
  expect_rejected(st_file("{\"\xf4\x90\x80\x80\":1}", 0), "not valid UTF-8");  // above U+10FFFF
  expect_rejected(st_file("\xef\xbb\xbf{}", 0), "byte-order mark");
  expect_rejected(st_file(R"({"a":)", 0), "not valid JSON");
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},})", 4), "not valid JSON");
  expect_rejected(st_file("{} x", 0), "not valid JSON");
  expect_rejected(st_file("[]", 0), "must be a JSON object");
  expect_rejected(st_file(R"({"a":[1]})", 0), "expected an object with dtype, shape and data_offsets");
}

BOOST_AUTO_TEST_CASE(rejects_duplicate_keys) {
  expect_rejected(
      st_file(
          R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
          2),
      "duplicate key 'a'");
  expect_rejected(st_file(R"({"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1),
                  "duplicate key 'dtype'");
  expect_rejected(st_file(R"({"__metadata__":{"k":"1","k":"2"}})", 0), "duplicate key 'k' in __metadata__");
  expect_rejected(st_file(R"({"__metadata__":{},"__metadata__":{}})", 0), "duplicate key '__metadata__'");
}

BOOST_AUTO_TEST_CASE(rejects_bad_entries) {
  expect_rejected(st_file(R"({"a":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}})", 4), "unknown dtype 'F31'");
  expect_rejected(st_file(R"({"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4), "unknown dtype 'f32'");
  expect_rejected(st_file(R"({"a":{"dtype":3,"shape":[1],"data_offsets":[0,4]}})", 4), "dtype must be a string");
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":[1]}})", 0), "missing key 'data_offsets'");
  expect_rejected(st_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "missing key 'dtype'");
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})", 4),
                  "unexpected key 'extra'");
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "negative number -1");
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", 4), "non-integer number 1.0");
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}})", 4),
                  "shape entries must be integers");
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", 4), "shape must be an array");
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 4), "exactly two integers");
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 4), "exactly two integers");
  expect_rejected(st_file(R"({"__metadata__":{"k":1}})", 0), "__metadata__ entry 'k' must be a string");
  expect_rejected(st_file(R"({"__metadata__":{"k":{"a":"b"}}})", 0), "__metadata__ entry 'k' must be a string");
  expect_rejected(st_file(R"({"__metadata__":["a"]})", 0), "__metadata__ must be an object of strings");
}

BOOST_AUTO_TEST_CASE(bounds_what_loco_cannot_index) {
  std::string meta = R"({"__metadata__":{)";
  for (int i = 0; i <= 10'000; ++i) meta += fmt::format(R"({}"k{}":"v")", i ? "," : "", i);
  meta += "}}";
  expect_rejected(st_file(meta, 0), "more than 10000 entries");
  // Zero elements, but rows of 2^96 elements.
  expect_rejected(
      st_file(R"({"a":{"dtype":"F32","shape":[0,281474976710655,281474976710655],"data_offsets":[0,0]}})", 0),
      "more elements per row than loco can index");
}

BOOST_AUTO_TEST_CASE(rejects_integers_past_two_to_the_48) {
  // 2^48 - 1 passes the schema (and then fails the size rule); 2^48 does not.
  expect_rejected(st_file(R"({"a":{"dtype":"U8","shape":[281474976710655],"data_offsets":[0,1]}})", 1),
                  "needs 281474976710655");
  expect_rejected(st_file(R"({"a":{"dtype":"U8","shape":[281474976710656],"data_offsets":[0,1]}})", 1),
                  "shape entry 281474976710656 exceeds");
  expect_rejected(st_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,281474976710656]}})", 1),
                  "data_offsets entry 281474976710656 exceeds");
  expect_rejected(st_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}})", 1),
                  "non-integer number");
}

BOOST_AUTO_TEST_CASE(rejects_shape_overflow) {
  // 2^47 · 2^47 · 2^47 elements overflow 64 bits; so do 2^40 · 2^21 elements of 64 bits each.
  expect_rejected(
      st_file(R"({"a":{"dtype":"U8","shape":[140737488355328,140737488355328,140737488355328],"data_offsets":[0,0]}})",
              0),
      "element count of shape [140737488355328, 140737488355328, 140737488355328] overflows");
  expect_rejected(st_file(R"({"a":{"dtype":"F64","shape":[1099511627776,2097152],"data_offsets":[0,0]}})", 0),
                  "byte size of shape");
}

BOOST_AUTO_TEST_CASE(rejects_offsets_that_do_not_tile_the_buffer) {
  // Overlap: b starts inside a.
  expect_rejected(
      st_file(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          12),
      "tensor 'b' has data_offsets [4, 12], expected to begin at byte 8");
  // Gap: b starts after a ends.
  expect_rejected(
      st_file(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
          12),
      "tensor 'b' has data_offsets [8, 12], expected to begin at byte 4");
  // Data not starting at 0.
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
                  "expected to begin at byte 0");
  // END before BEGIN.
  expect_rejected(
      st_file(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})",
          4),
      "tensor 'b' has data_offsets [4, 0], whose END lies before its BEGIN");
  // Ten tensors all claiming [0,16] (aliasing).
  std::string ten = "{";
  for (int i = 0; i < 10; ++i)
    ten += fmt::format(R"({}"t{}":{{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", i ? "," : "", i);
  ten += "}";
  expect_rejected(st_file(ten, 16), "data_offsets [0, 16], expected to begin at byte 16");
}

BOOST_AUTO_TEST_CASE(rejects_sizes_that_do_not_match) {
  expect_rejected(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4),
                  "tensor 'a': data_offsets [0, 4] hold 4 bytes, but F32 of shape [2] needs 8");
  expect_rejected(st_file(R"({"a":{"dtype":"BF16","shape":[3,1],"data_offsets":[0,8]}})", 8), "needs 6");
  // F4 packs two per byte; an odd count does not fill whole bytes.
  expect_rejected(st_file(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2), "do not fill whole bytes");
}

BOOST_AUTO_TEST_CASE(rejects_truncated_and_trailing_bytes) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  BOOST_CHECK_NO_THROW(open_mem(st_file(h, 8)));
  expect_rejected(st_file(h, 7), "truncated");
  expect_rejected(st_file(h, 9), "1 unexpected bytes after");
}

BOOST_AUTO_TEST_CASE(rejects_valid_safetensors_dtypes_loco_cannot_hold) {
  expect_rejected(st_file(R"({"w":{"dtype":"F8_E4M3","shape":[2,2],"data_offsets":[0,4]}})", 4),
                  "dtype F8_E4M3 of tensor 'w' is not supported by loco");
  expect_rejected(st_file(R"({"w":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}})", 2),
                  "dtype F4 of tensor 'w' is not supported by loco");
  expect_rejected(st_file(R"({"w":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", 8),
                  "dtype C64 of tensor 'w' is not supported by loco");
  // The reference's own checks come first: a broken F8 file is reported as broken.
  expect_rejected(st_file(R"({"w":{"dtype":"F8_E5M2","shape":[2,2],"data_offsets":[0,4]}})", 5), "unexpected bytes");
}

BOOST_AUTO_TEST_CASE(sniffs_safetensors_heads) {
  auto head = [](const Bytes& b) { return std::span<const std::byte>(b.data(), std::min<std::size_t>(b.size(), 16)); };
  BOOST_TEST(loco::io::looks_like_safetensors(head(st_file("{}      ", 0))));
  BOOST_TEST(loco::io::looks_like_safetensors(head(st_file("  {\"a\":1}", 0))));
  BOOST_TEST(!loco::io::looks_like_safetensors(head(st_file("[]", 0))));
  BOOST_TEST(!loco::io::looks_like_safetensors(head(st_file("{}", 0, 200'000'000))));
  BOOST_TEST(!loco::io::looks_like_safetensors(head(Bytes(8, std::byte{0}))));
}

BOOST_AUTO_TEST_SUITE_END()
