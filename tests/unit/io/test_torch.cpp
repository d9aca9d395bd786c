// PyTorch checkpoints: files written by torch.save (tests/data/torch, made by make_fixtures.py),
// hand-built zip archives (ZIP64, local-header padding) and hand-assembled pickles for every refusal.
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "support.hpp"

#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/pickle.hpp"
#include "loco/io/source.hpp"
#include "loco/io/torch_zip.hpp"

using loco::DType;
using loco::Error;
using loco::ErrorKind;
using loco::Shape;
using loco::io::TensorInfo;
using loco::io::TensorSource;
using Bytes = std::vector<std::byte>;

namespace {

// LOCO_TEST_DATA is tests/data (tests/CMakeLists.txt, loco_test_data).
const std::string kData = std::string(LOCO_TEST_DATA) + "/torch/";

Bytes file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  BOOST_REQUIRE_MESSAGE(f, "cannot read fixture " << path);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Bytes b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}

std::vector<float> floats(const TensorSource& s, const std::string& name) {
  const loco::Tensor t = s.read(s.get(name), DType::F32);
  return {t.f32().begin(), t.f32().end()};
}

float base_at(int i, int j) { return 0.5f * static_cast<float>(i * 6 + j) - 3.0f; }

using loco::test::require_error;

// --- a minimal zip writer (stored members) for archives torch does not produce -----------------

void put(Bytes& b, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}
void put(Bytes& b, const std::string& s) {
  for (char c : s) b.push_back(static_cast<std::byte>(c));
}

struct Member {
  std::string name;
  Bytes data;
  std::uint16_t method = 0;
};

// A zip of stored members. local_pad adds an extra field of that many bytes to each local header
// (as torch ≥ 2 aligns data); zip64 writes every central-directory size and offset through the
// ZIP64 extra field and the end record through the ZIP64 end record.
Bytes make_zip(const std::vector<Member>& members, std::size_t local_pad, bool zip64) {
  Bytes z, cd;
  for (const auto& m : members) {
    const std::uint64_t lho = z.size();
    put(z, 0x04034b50, 4);
    put(z, 20, 2);
    put(z, 0, 2);
    put(z, m.method, 2);
    put(z, 0, 4);
    put(z, 0, 4);  // crc (not checked)
    put(z, m.data.size(), 4);
    put(z, m.data.size(), 4);
    put(z, m.name.size(), 2);
    put(z, local_pad == 0 ? 0 : local_pad + 4, 2);
    put(z, m.name);
    if (local_pad) {
      put(z, 0x4246, 2);  // "FB"
      put(z, local_pad, 2);
      z.insert(z.end(), local_pad, std::byte{0});
    }
    z.insert(z.end(), m.data.begin(), m.data.end());
    put(cd, 0x02014b50, 4);
    put(cd, 45, 2);
    put(cd, 45, 2);
    put(cd, 0, 2);
    put(cd, m.method, 2);
    put(cd, 0, 4);
    put(cd, 0, 4);
    put(cd, zip64 ? 0xffffffff : m.data.size(), 4);
    put(cd, zip64 ? 0xffffffff : m.data.size(), 4);
    put(cd, m.name.size(), 2);
    put(cd, zip64 ? 28 : 0, 2);
    put(cd, 0, 2);
    put(cd, 0, 2);
    put(cd, 0, 2);
    put(cd, 0, 4);
    put(cd, zip64 ? 0xffffffff : lho, 4);
    put(cd, m.name);
    if (zip64) {
      put(cd, 0x0001, 2);
      put(cd, 24, 2);
      put(cd, m.data.size(), 8);
      put(cd, m.data.size(), 8);
      put(cd, lho, 8);
    }
  }
  const std::uint64_t cd_offset = z.size();
  z.insert(z.end(), cd.begin(), cd.end());
  if (zip64) {
    const std::uint64_t rec = z.size();
    put(z, 0x06064b50, 4);
    put(z, 44, 8);
    put(z, 45, 2);
    put(z, 45, 2);
    put(z, 0, 4);
    put(z, 0, 4);
    put(z, members.size(), 8);
    put(z, members.size(), 8);
    put(z, cd.size(), 8);
    put(z, cd_offset, 8);
    put(z, 0x07064b50, 4);
    put(z, 0, 4);
    put(z, rec, 8);
    put(z, 1, 4);
  }
  put(z, 0x06054b50, 4);
  put(z, 0, 2);
  put(z, 0, 2);
  put(z, zip64 ? 0xffff : members.size(), 2);
  put(z, zip64 ? 0xffff : members.size(), 2);
  put(z, zip64 ? 0xffffffff : cd.size(), 4);
  put(z, zip64 ? 0xffffffff : cd_offset, 4);
  put(z, 0, 2);
  return z;
}

// --- a pickle assembler ---------------------------------------------------------------------------

struct P {
  Bytes b;
  P() { op(0x80).op(2); }
  P& op(unsigned c) {
    b.push_back(static_cast<std::byte>(c));
    return *this;
  }
  P& raw(const std::string& s) {
    put(b, s);
    return *this;
  }
  P& str(const std::string& s) {
    op('X');
    put(b, s.size(), 4);
    return raw(s);
  }
  P& global(const std::string& m, const std::string& n) { return op('c').raw(m + "\n" + n + "\n"); }
  P& i(std::uint8_t v) { return op('K').op(v); }
  P& ints(std::initializer_list<std::uint8_t> v) {
    op('(');
    for (auto x : v) i(x);
    return op('t');
  }
  // _rebuild_tensor_v2(('storage', torch.<cls>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())
  P& tensor(const std::string& cls, const std::string& key, std::uint8_t numel, std::uint8_t offset,
            std::initializer_list<std::uint8_t> size, std::initializer_list<std::uint8_t> stride,
            const std::string& pid_tag = "storage") {
    global("torch._utils", "_rebuild_tensor_v2").op('(');
    op('(').str(pid_tag).global("torch", cls).str(key).str("cpu").i(numel).op('t').op('Q');
    i(offset).ints(size).ints(stride).op(0x89).global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  Bytes done() {
    op('.');
    return b;
  }
};

Bytes floats_le(std::initializer_list<float> v) {
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), std::data(v), b.size());
  return b;
}

std::unique_ptr<TensorSource> open_zip(Bytes zip) {
  return loco::io::open_torch(loco::io::memory_bytes(std::move(zip), "crafted.pt"));
}

// A one-tensor checkpoint "w" over storage 0 holding {1, 2, 3, 4, 5, 6}.
Bytes one_tensor(const P& pickle, std::size_t pad = 0, bool zip64 = false) {
  return make_zip({{"ckpt/data.pkl", pickle.b}, {"ckpt/data/0", floats_le({1, 2, 3, 4, 5, 6})}}, pad, zip64);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(torch_checkpoints)

BOOST_AUTO_TEST_CASE(state_dict_written_by_torch) {
  auto src = loco::io::open_source(kData + "state.pt", false);
  BOOST_TEST(src->format() == "torch");
  std::vector<std::string> names;
  for (const auto& t : src->tensors()) {
    names.push_back(t.name);
    BOOST_TEST(t.group == "tensors");
  }
  const std::vector<std::string> want = {"base",   "transposed", "rows", "column",     "block",      "expanded",
                                         "scalar", "empty",      "bf16", "f16",        "i64",        "i32",
                                         "i8",     "u8",         "mask", "emb.weight", "head.weight"};
  BOOST_TEST(names == want, boost::test_tools::per_element());

  auto check = [&](const std::string& name, Shape shape, auto at) {
    const TensorInfo& t = src->get(name);
    BOOST_TEST(t.shape == shape, boost::test_tools::per_element());
    const auto v = floats(*src, name);
    std::size_t k = 0;
    const std::int64_t rows = shape.empty() ? 1 : shape[0];
    const std::int64_t cols = shape.size() < 2 ? 1 : shape[1];
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c, ++k) BOOST_TEST(v[k] == at(static_cast<int>(r), static_cast<int>(c)));
  };
  check("base", {4, 6}, [](int i, int j) { return base_at(i, j); });
  check("transposed", {6, 4}, [](int i, int j) { return base_at(j, i); });
  check("rows", {2, 6}, [](int i, int j) { return base_at(i + 1, j); });
  check("column", {4}, [](int i, int) { return base_at(i, 2); });
  check("block", {3, 3}, [](int i, int j) { return base_at(i + 1, j + 2); });
  const float ex[] = {1.5f, -2.0f, 3.25f};
  check("expanded", {2, 3}, [&](int, int j) { return ex[j]; });

  const TensorInfo& scalar = src->get("scalar");
  BOOST_TEST(scalar.shape.empty());
  BOOST_TEST((scalar.dtype == DType::F64));
  BOOST_TEST(src->read(scalar).as<double>()[0] == 7.5);
  BOOST_TEST(src->get("empty").shape == (Shape{0, 5}), boost::test_tools::per_element());
  BOOST_TEST(src->read(src->get("empty")).numel() == 0);

  BOOST_TEST((src->get("bf16").dtype == DType::BF16));
  BOOST_TEST(floats(*src, "bf16") == (std::vector<float>{1.0f, -2.5f, 3.140625f, 65280.0f}),
             boost::test_tools::per_element());
  BOOST_TEST((src->get("f16").dtype == DType::F16));
  BOOST_TEST(floats(*src, "f16") == (std::vector<float>{0.5f, -1.0f, 2048.0f, 0.0009765625f}),
             boost::test_tools::per_element());
  const auto i64 = src->read(src->get("i64"));
  BOOST_TEST(i64.as<std::int64_t>()[0] == -(std::int64_t{1} << 40));
  BOOST_TEST(i64.as<std::int64_t>()[2] == (std::int64_t{1} << 40) + 3);
  BOOST_TEST(src->read(src->get("i32")).as<std::int32_t>()[0] == -7);
  BOOST_TEST(src->read(src->get("i8")).as<std::int8_t>()[0] == -128);
  BOOST_TEST(src->read(src->get("u8")).as<std::uint8_t>()[1] == 255);
  const TensorInfo& mask = src->get("mask");
  BOOST_TEST((mask.dtype == DType::Bool));
  const auto m = src->read(mask);
  BOOST_TEST(std::to_integer<int>(m.bytes()[0]) == 1);
  BOOST_TEST(std::to_integer<int>(m.bytes()[1]) == 0);
  // The Parameter and its tied copy read the same storage.
  const std::vector<float> emb = {-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f};
  BOOST_TEST(floats(*src, "emb.weight") == emb, boost::test_tools::per_element());
  BOOST_TEST(floats(*src, "head.weight") == emb, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(row_blocks_of_strided_views_match_the_whole) {
  auto src = loco::io::open_source(kData + "state.pt", false);
  for (const std::string name : {"transposed", "block", "column", "expanded", "rows"}) {
    const TensorInfo& t = src->get(name);
    const loco::Tensor whole = src->read(t);
    const std::size_t row_bytes = static_cast<std::size_t>(t.row_elements()) * loco::dtype_size(t.dtype);
    for (std::int64_t r0 = 0; r0 < t.rows(); ++r0)
      for (std::int64_t n = 0; r0 + n <= t.rows(); ++n) {
        Bytes block(static_cast<std::size_t>(n) * row_bytes);
        src->read_rows(t, r0, n, block);
        BOOST_TEST(std::memcmp(block.data(), whole.bytes().data() + r0 * row_bytes, block.size()) == 0);
      }
  }
}

BOOST_AUTO_TEST_CASE(nested_dicts_lists_and_scalars_protocol_4) {
  auto src = loco::io::open_source(kData + "nested.pt", false);
  std::vector<std::string> names;
  for (const auto& t : src->tensors()) names.push_back(t.name);
  BOOST_TEST(names == (std::vector<std::string>{"model.layer.w", "model.layer.b", "optim.0"}),
             boost::test_tools::per_element());
  BOOST_TEST(
      floats(*src, "model.layer.w") == (std::vector<float>{base_at(0, 0), base_at(0, 1), base_at(1, 0), base_at(1, 1)}),
      boost::test_tools::per_element());
  const auto& a = src->attributes();
  BOOST_TEST(a.get_int("epoch").value_or(-1) == 3);
  BOOST_TEST(a.get_double("lr").value_or(0) == 0.125);
  BOOST_TEST(a.get_string("name").value_or("") == "run-1");
  BOOST_TEST(a.get_int("done").value_or(-1) == 1);
  BOOST_TEST(!a.contains("nothing"));
}

BOOST_AUTO_TEST_CASE(legacy_torchscript_and_foreign_classes_are_refused_by_name) {
  require_error([] { loco::io::open_source(kData + "legacy.pt", false); }, ErrorKind::BadInput,
                {"legacy", "legacy.pt"});
  require_error([] { loco::io::open_source(kData + "script.pt", false); }, ErrorKind::BadInput, {"TorchScript"});
  require_error([] { loco::io::open_source(kData + "evil.pt", false); }, ErrorKind::BadInput,
                {"__main__.NotAllowed", "allow-list", "evil.pt"});
}

BOOST_AUTO_TEST_CASE(zip64_end_record_and_extra_fields) {
  // torch's own archive with its classic end record voided: the ZIP64 record must be used.
  Bytes b = file_bytes(kData + "state.pt");
  const std::size_t e = b.size() - 22;
  BOOST_REQUIRE(std::to_integer<int>(b[e]) == 'P' && std::to_integer<int>(b[e + 3]) == 6);
  for (std::size_t i = 8; i < 20; ++i) b[e + i] = std::byte{0xff};
  auto src = open_zip(std::move(b));
  BOOST_TEST(src->tensors().size() == 17u);
  BOOST_TEST(floats(*src, "block")[4] == base_at(2, 3));

  // Central-directory ZIP64 extra fields and 64-byte padding in the local headers.
  P p;
  p.op('}').str("w").tensor("FloatStorage", "0", 6, 1, {2, 2}, {1, 2}).op('s');
  p.done();
  for (bool zip64 : {false, true})
    for (std::size_t pad : {0u, 60u}) {
      auto s = open_zip(one_tensor(p, pad, zip64));
      BOOST_TEST(floats(*s, "w") == (std::vector<float>{2, 4, 3, 5}), boost::test_tools::per_element());
    }
  const auto entries = loco::io::read_zip_directory(*loco::io::memory_bytes(one_tensor(p, 60, true), "z"));
  BOOST_REQUIRE(entries.size() == 2u);
  BOOST_TEST(entries[1].name == "ckpt/data/0");
  BOOST_TEST(entries[1].size == 24u);
}

BOOST_AUTO_TEST_CASE(malformed_archives_are_refused) {
  P p;
  p.op('}').str("w").tensor("FloatStorage", "0", 6, 0, {6}, {1}).op('s');
  p.done();
  Bytes good = one_tensor(p);
  // Truncation anywhere: an error, never a crash.
  for (std::size_t n = 0; n < good.size(); n += 7) {
    Bytes cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    require_error([&] { open_zip(std::move(cut)); }, ErrorKind::BadInput, {"crafted.pt"});
  }
  require_error(
      [&] {
        open_zip(make_zip({{"ckpt/data.pkl", p.b, 8}, {"ckpt/data/0", floats_le({1})}}, 0, false));
      },
      ErrorKind::BadInput, {"compressed"});
  require_error([&] { open_zip(make_zip({{"data.pkl", p.b}}, 0, false)); }, ErrorKind::BadInput, {"record folder"});
  require_error(
      [&] {
        open_zip(make_zip({{"ckpt/data.pkl", p.b},
                           {"ckpt/byteorder", Bytes{std::byte{'b'}, std::byte{'i'}, std::byte{'g'}}},
                           {"ckpt/data/0", floats_le({1, 2, 3, 4, 5, 6})}},
                          0, false));
      },
      ErrorKind::BadInput, {"big"});
  require_error([&] { open_zip(make_zip({{"ckpt/data.pkl", p.b}}, 0, false)); }, ErrorKind::BadInput, {"data/0"});
}

BOOST_AUTO_TEST_CASE(tensors_that_misuse_storages_are_refused) {
  auto refuse = [](P p, std::initializer_list<std::string_view> why) {
    p.done();
    require_error([&] { open_zip(one_tensor(p)); }, ErrorKind::BadInput, why);
  };
  {  // 6 elements, offset 1, contiguous 6: one past the end
    P p;
    p.op('}').str("w").tensor("FloatStorage", "0", 6, 1, {6}, {1}).op('s');
    refuse(p, {"w", "reaches past its storage"});
  }
  {  // strides that run past the end
    P p;
    p.op('}').str("w").tensor("FloatStorage", "0", 6, 0, {2, 3}, {3, 2}).op('s');
    refuse(p, {"reaches past"});
  }
  {  // storage claims more elements than the record holds
    P p;
    p.op('}').str("w").tensor("FloatStorage", "0", 7, 0, {1}, {1}).op('s');
    refuse(p, {"holds 24 bytes"});
  }
  {
    P p;
    p.op('}').str("w").tensor("QInt8Storage", "0", 6, 0, {6}, {1}).op('s');
    refuse(p, {"QInt8Storage"});
  }
  {
    P p;
    p.op('}').str("w").tensor("FloatStorage", "0", 6, 0, {6}, {1}, "module").op('s');
    refuse(p, {"persistent id"});
  }
  {  // duplicate keys
    P p;
    p.op('}').op('(').str("w").tensor("FloatStorage", "0", 6, 0, {6}, {1});
    p.str("w").tensor("FloatStorage", "0", 6, 0, {6}, {1}).op('u');
    refuse(p, {"appears twice"});
  }
}

BOOST_AUTO_TEST_CASE(pickle_reader_builds_data_and_refuses_code) {
  using loco::io::pickle::parse;
  using loco::io::pickle::Value;
  {
    P p;  // [1, -2, 2^40, 1.5, "x", b"\x00\xff", None, True]
    p.op(']').op('(').i(1).op('J').raw(std::string("\xfe\xff\xff\xff", 4));
    p.op(0x8a).op(6).raw(std::string("\x00\x00\x00\x00\x00\x01", 6));
    p.op('G').raw(std::string("\x3f\xf8\x00\x00\x00\x00\x00\x00", 8)).str("x");
    p.global("_codecs", "encode").str(std::string("\x00\xc3\xbf", 3)).str("latin1").op(0x86).op('R');
    p.op('N').op(0x88).op('e');
    const auto pk = parse(p.done(), "t");
    const auto& l = pk.root().items;
    BOOST_REQUIRE(l.size() == 8u);
    BOOST_TEST(l[0]->integer == 1);
    BOOST_TEST(l[1]->integer == -2);
    BOOST_TEST(l[2]->integer == (std::int64_t{1} << 40));
    BOOST_TEST(l[3]->real == 1.5);
    BOOST_TEST(l[4]->text == "x");
    BOOST_TEST(l[5]->is(Value::Kind::Bytes));
    BOOST_TEST(l[5]->text == std::string("\x00\xff", 2));
    BOOST_TEST(l[6]->is(Value::Kind::None));
    BOOST_TEST(l[7]->boolean);
  }
  {  // argparse.Namespace via NEWOBJ + BUILD: opaque data, with its state
    P p;
    p.global("argparse", "Namespace").op(')').op(0x81).op('}').str("lr").i(3).op('s').op('b');
    const auto pk = parse(p.done(), "t");
    BOOST_TEST(pk.root().callable() == "argparse.Namespace");
    BOOST_REQUIRE(pk.root().state != nullptr);
    BOOST_TEST(pk.root().state->items.size() == 2u);
  }
  {  // memo: a list stored and fetched is the same node, and a cycle is harmless
    P p;
    p.op(']').op('q').op(0).op('h').op(0).op('a');
    const auto pk = parse(p.done(), "t");
    BOOST_TEST(pk.root().items.size() == 1u);
    BOOST_TEST(pk.root().items[0] == &pk.root());
  }
  auto refuse = [&](P p, const std::string& why, bool stop = true) {
    if (stop) p.op('.');
    require_error([&] { parse(p.b, "where.pkl"); }, ErrorKind::BadInput, {"where.pkl", why});
  };
  {
    P p;
    p.global("os", "system").str("rm -rf /").op(0x85).op('R');
    refuse(p, "os.system is not on the allow-list");
  }
  {
    P p;
    p.global("builtins", "eval");
    refuse(p, "builtins.eval");
  }
  {
    P p;
    p.op('i').raw("os\nsystem\n");
    refuse(p, "opcode refused");
  }
  {
    P p;
    p.op(0xff);
    refuse(p, "unknown");
  }
  {
    P p;
    p.op('h').op(3);
    refuse(p, "memo entry 3");
  }
  {
    P p;
    p.op('a');
    refuse(p, "underflow");
  }
  {
    P p;
    p.op('e');
    refuse(p, "MARK");
  }
  {
    P p;
    p.op(0x8a).op(9).raw(std::string(9, '\x01'));
    refuse(p, "64 bits");
  }
  {
    P p;
    p.op('X').raw(std::string("\xff\xff\xff\x7f", 4)).raw("ab");
    refuse(p, "truncated", false);
  }
  {
    P p;
    p.op('N').op('N');
    refuse(p, "2 objects");
  }
  {
    P p;
    p.op('N').op('.').op('N');
    refuse(p, "after STOP", false);
  }
  {
    P p;
    p.op('}').op('N').op('a');
    refuse(p, "expected a list");
  }
  {
    P p;
    p.op('N').op(')').op('R');
    refuse(p, "expected a global");
  }
  {
    P p;
    p.b[1] = std::byte{9};
    refuse(p, "protocol 9");
  }
}

BOOST_AUTO_TEST_SUITE_END()
