// DeepSpeed universal checkpoint folders and the torch.save writer: the fixture folder of
// tests/data/ucp (made by torch.save, see make_fixtures.py) read value by value, written back and
// re-read exactly, torch archives written by loco read by loco's torch reader, and the refusals.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "support.hpp"

#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"
#include "loco/io/torch_write.hpp"
#include "loco/io/torch_zip.hpp"
#include "loco/io/ucp.hpp"

using loco::DType;
using loco::ErrorKind;
using loco::Shape;
using loco::io::TensorInfo;
using loco::test::require_error;
using loco::test::TempDir;
namespace fs = std::filesystem;

namespace {

const std::string kUcp = std::string(LOCO_TEST_DATA) + "/ucp/ckpt";

// make_fixtures.py: element i of state s of param p is 0.25*i - 1 + s + 10*p.
float fixture_value(int p, int s, int i) {
  return 0.25f * static_cast<float>(i) - 1.0f + static_cast<float>(s + 10 * p);
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void copy_folder(const fs::path& from, const fs::path& to) { fs::copy(from, to, fs::copy_options::recursive); }

}  // namespace

BOOST_AUTO_TEST_SUITE(ucp)

BOOST_AUTO_TEST_CASE(crc32_of_the_check_string) {
  // The CRC-32 check value of "123456789" (ISO-HDLC), and continuation over split input.
  const std::string s = "123456789";
  const auto* b = reinterpret_cast<const std::byte*>(s.data());
  BOOST_TEST(loco::io::crc32(0, std::span(b, 9)) == 0xCBF43926u);
  BOOST_TEST(loco::io::crc32(loco::io::crc32(0, std::span(b, 4)), std::span(b + 4, 5)) == 0xCBF43926u);
  // Longer than the 8-byte stride, not a multiple of it.
  std::vector<std::byte> many(1003);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<std::byte>(i * 7 + 3);
  std::uint32_t bytewise = 0xffffffffu;
  for (std::byte x : many) {
    bytewise ^= std::to_integer<std::uint32_t>(x);
    for (int k = 0; k < 8; ++k) bytewise = (bytewise & 1) ? 0xedb88320u ^ (bytewise >> 1) : bytewise >> 1;
  }
  BOOST_TEST(loco::io::crc32(0, many) == ~bytewise);
}

BOOST_AUTO_TEST_CASE(reads_the_fixture_folder) {
  auto src = loco::io::open_source(kUcp);
  BOOST_TEST(src->format() == "ucp");
  const auto& ts = src->tensors();
  BOOST_REQUIRE_EQUAL(ts.size(), 6u);
  const char* groups[] = {"tensors", "state/exp_avg", "state/exp_avg_sq"};
  const char* names[] = {"emb.weight", "qkv.weight"};
  const Shape shapes[] = {{3, 2}, {8, 1}};
  for (int s = 0; s < 3; ++s)
    for (int p = 0; p < 2; ++p) {
      const TensorInfo& t = ts[static_cast<std::size_t>(2 * s + p)];
      BOOST_TEST(t.group == groups[s]);
      BOOST_TEST(t.name == names[p]);
      BOOST_TEST(t.shape == shapes[p]);
      BOOST_TEST((t.attrs.get_int("cat_dim") == 0));
      const loco::Tensor v = src->read(t);
      for (int i = 0; i < v.numel(); ++i) BOOST_TEST(v.f32()[static_cast<std::size_t>(i)] == fixture_value(p, s, i));
    }
  BOOST_TEST((ts[0].attrs.get_int("vocab_tensor") == 1));
  BOOST_TEST(!ts[1].attrs.contains("vocab_tensor"));
  BOOST_TEST((ts[1].attrs.get_string("sub_param_shape") ==
              std::string(R"({"patterns":["qkv"],"shape":[[4,2,2],1],"partition_dim":0})")));
  const auto state = src->group_attributes("state");
  BOOST_TEST((state.get_int("step") == 5));
  BOOST_TEST((state.get_string("ucp_step_type") == std::string("float32")));
  // A row block in the middle reads the same bytes as the whole tensor.
  std::vector<std::byte> rows(4 * 4);
  src->read_rows(ts[3], 1, 4, rows);
  float f[4];
  std::memcpy(f, rows.data(), sizeof f);
  for (int i = 0; i < 4; ++i) BOOST_TEST(f[i] == fixture_value(1, 1, 1 + i));
}

BOOST_AUTO_TEST_CASE(zero_folder_and_latest_universal_are_accepted) {
  TempDir tmp("ucp");
  auto a = loco::io::open_ucp(kUcp + "/zero");
  BOOST_TEST(a->tensors().size() == 6u);
  fs::create_directories(tmp.path / "global_step5");
  copy_folder(kUcp, tmp.path / "global_step5");
  std::ofstream(tmp / "latest_universal") << "global_step5\n";
  BOOST_TEST(loco::io::is_ucp_folder(tmp.path.string()));
  auto b = loco::io::open_ucp(tmp.path.string());
  BOOST_TEST(b->tensors().size() == 6u);
}

BOOST_AUTO_TEST_CASE(write_back_reproduces_the_folder) {
  TempDir tmp("ucp");
  auto src = loco::io::open_source(kUcp);
  loco::io::write_ucp(*src, tmp / "out/");
  for (const char* p : {"emb.weight", "qkv.weight"})
    for (const char* f : {"fp32.pt", "exp_avg.pt", "exp_avg_sq.pt", "step.pt"})
      BOOST_TEST(fs::is_regular_file(tmp.path / "out" / "zero" / p / f), p << "/" << f);
  auto back = loco::io::open_source(tmp / "out");
  BOOST_REQUIRE_EQUAL(back->tensors().size(), src->tensors().size());
  for (std::size_t i = 0; i < src->tensors().size(); ++i) {
    const TensorInfo& a = src->tensors()[i];
    const TensorInfo& b = back->tensors()[i];
    BOOST_TEST(a.key() == b.key());
    BOOST_TEST(a.shape == b.shape);
    BOOST_TEST(a.attrs.size() == b.attrs.size());
    for (const auto& e : a.attrs) BOOST_TEST((b.attrs.find(e.name) && *b.attrs.find(e.name) == e.value), e.name);
    const loco::Tensor x = src->read(a), y = back->read(b);
    BOOST_TEST(std::memcmp(x.bytes().data(), y.bytes().data(), x.nbytes()) == 0);
  }
  BOOST_TEST((back->group_attributes("state").get_int("step") == 5));
  BOOST_TEST((back->group_attributes("state").get_string("ucp_step_type") == std::string("float32")));
  // Writing is deterministic: a second folder from the re-read one is byte-identical.
  loco::io::write_ucp(*back, tmp / "again");
  for (const char* p : {"emb.weight", "qkv.weight"})
    for (const char* f : {"fp32.pt", "exp_avg_sq.pt", "step.pt"}) {
      const std::string a = slurp((tmp.path / "out" / "zero" / p / f).string());
      BOOST_TEST(!a.empty());
      BOOST_TEST((a == slurp((tmp.path / "again" / "zero" / p / f).string())), p << "/" << f);
    }
}

BOOST_AUTO_TEST_CASE(torch_archives_of_every_dtype_read_back) {
  TempDir tmp("ucp");
  std::vector<TensorInfo> plan = {
      {"tensors", "f32", {2, 3}, DType::F32, {}},   {"tensors", "bf16", {4}, DType::BF16, {}},
      {"tensors", "f64", {}, DType::F64, {}},       {"tensors", "i64", {2}, DType::I64, {}},
      {"tensors", "empty", {0, 5}, DType::F16, {}}, {"tensors", "mask", {3}, DType::Bool, {}}};
  loco::Attributes root;
  root.set("kind", std::string("model"));
  {
    auto sink = loco::io::create_sink(tmp / "in.h5", root, plan);
    for (std::size_t i = 0; i < plan.size(); ++i) {
      loco::Tensor t(plan[i].shape, plan[i].dtype);
      for (std::size_t b = 0; b < t.nbytes(); ++b)
        t.bytes()[b] = static_cast<std::byte>(plan[i].dtype == DType::Bool ? b % 2 : (b * 37 + i) & 0xff);
      sink->write(i, t);
    }
    sink->commit();
  }
  auto src = loco::io::open_source(tmp / "in.h5");
  std::vector<loco::io::TorchItem> items;
  loco::io::TorchValue n;
  n.integer = 1 << 20;
  items.push_back({"big", n});
  for (const auto& t : src->tensors()) {
    loco::io::TorchValue v;
    v.kind = loco::io::TorchValue::Kind::Tensor;
    v.source = src.get();
    v.tensor = &t;
    items.push_back({t.name, v});
  }
  // Row blocks of one row: the storage is streamed in many pieces.
  loco::io::write_torch_dict(tmp / "out.pt", "out", items, 1);
  auto back = loco::io::open_torch(loco::io::open_bytes(tmp / "out.pt"));
  BOOST_TEST((back->attributes().get_int("big") == (1 << 20)));
  for (const auto& t : src->tensors()) {
    const TensorInfo* b = back->find(t.name);
    BOOST_REQUIRE(b != nullptr);
    BOOST_TEST(b->shape == t.shape);
    BOOST_TEST((b->dtype == t.dtype));
    const loco::Tensor x = src->read(t), y = back->read(*b);
    BOOST_TEST(std::memcmp(x.bytes().data(), y.bytes().data(), x.nbytes()) == 0);
  }
  // Every storage starts 64-byte aligned, as PyTorch's reader wants for mmap.
  auto bytes = loco::io::open_bytes(tmp / "out.pt");
  for (const auto& e : loco::io::read_zip_directory(*bytes))
    if (e.name.find("/data/") != std::string::npos) BOOST_TEST(e.data_offset % 64 == 0u, e.name);
}

BOOST_AUTO_TEST_CASE(refusals) {
  TempDir tmp("ucp");
  auto src = loco::io::open_source(kUcp);
  // Output folder not empty.
  fs::create_directories(tmp.path / "full");
  std::ofstream(tmp / "full/x") << "x";
  require_error([&] { loco::io::write_ucp(*src, tmp / "full"); }, ErrorKind::Usage, {"full", "not an empty folder"});
  BOOST_TEST(fs::is_regular_file(tmp.path / "full" / "x"));
  // A folder that is no universal checkpoint.
  require_error([&] { loco::io::open_source(tmp / "full"); }, ErrorKind::BadInput, {"universal checkpoint"});
  // Steps that differ between parameters.
  copy_folder(kUcp, tmp.path / "steps");
  fs::copy_file(tmp.path / "steps/zero/emb.weight/fp32.pt", tmp.path / "steps/zero/qkv.weight/step.pt",
                fs::copy_options::overwrite_existing);
  require_error([&] { loco::io::open_source(tmp / "steps"); }, ErrorKind::BadInput, {"step"});
  // A state file whose shape is not fp32's.
  copy_folder(kUcp, tmp.path / "shape");
  fs::copy_file(tmp.path / "shape/zero/emb.weight/fp32.pt", tmp.path / "shape/zero/qkv.weight/exp_avg.pt",
                fs::copy_options::overwrite_existing);
  require_error([&] { loco::io::open_source(tmp / "shape"); }, ErrorKind::BadInput,
                {"qkv.weight/exp_avg.pt", "differs from fp32.pt"});
  // A parameter folder without fp32.pt.
  copy_folder(kUcp, tmp.path / "nofp32");
  fs::remove(tmp.path / "nofp32/zero/qkv.weight/fp32.pt");
  require_error([&] { loco::io::open_source(tmp / "nofp32"); }, ErrorKind::BadInput, {"qkv.weight", "no fp32.pt"});
  // A tensor name that cannot be a folder, and nothing left behind.
  {
    auto sink = loco::io::create_sink(tmp / "slash.safetensors", {}, {{"tensors", "a/b", {2}, DType::F32, {}}});
    sink->write(0, loco::Tensor({2}));
    sink->commit();
  }
  auto dots = loco::io::open_source(tmp / "slash.safetensors");
  require_error([&] { loco::io::write_ucp(*dots, tmp / "dots"); }, ErrorKind::BadInput, {"'a/b'"});
  BOOST_TEST(!fs::exists(tmp.path / "dots"));
  for (const auto& e : fs::directory_iterator(tmp.path))
    BOOST_TEST(e.path().filename().string().find(".tmp-") == std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
