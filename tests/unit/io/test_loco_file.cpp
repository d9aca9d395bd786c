// The loco HDF5 file: round trips of every dtype and group, row-block streaming, validation of
// what is read, and the checks used when files are combined.
#include <boost/test/unit_test.hpp>

#include "support.hpp"

#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <thread>
#include <vector>

#include "loco/core/checksum.hpp"
#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/output.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace fs = std::filesystem;
using namespace loco;
using namespace loco::io;

namespace {

using loco::test::TempDir;

Attributes root_of(const std::string& kind) {
  Attributes a;
  a.set("kind", kind);
  return a;
}

Tensor ramp(Shape shape, DType dt, double scale = 0.5) {
  Tensor f(shape, DType::F64);
  auto v = f.as<double>();
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = (static_cast<double>(i) - 3.0) * scale;
  return f.to(dt);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.bytes().data(), b.bytes().data(), a.nbytes()) == 0;
}

template <typename Fn>
void expect_error(ErrorKind kind, const std::string& needle, Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    BOOST_TEST((e.kind() == kind), "kind " << static_cast<int>(e.kind()) << " for: " << e.what());
    BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos, "'" << needle << "' not in: " << e.what());
    return;
  }
  BOOST_FAIL("no loco::Error thrown; expected one containing '" << needle << "'");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(loco_file)

BOOST_AUTO_TEST_CASE(every_dtype_round_trips_bit_exactly) {
  TempDir dir;
  const std::string path = dir / "all.h5";
  std::vector<TensorInfo> plan;
  std::vector<Tensor> data;
  for (DType dt : kAllDTypes) {
    plan.push_back({"tensors", std::string(dtype_name(dt)), {2, 3}, dt, {}});
    data.push_back(ramp({2, 3}, dt));
  }
  auto sink = create_sink(path, root_of("model"), plan);
  for (std::size_t i = 0; i < plan.size(); ++i) sink->write(i, data[i]);
  sink->commit();

  auto src = open_source(path);
  BOOST_TEST(src->format() == "loco");
  BOOST_REQUIRE_EQUAL(src->tensors().size(), plan.size());
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const TensorInfo& t = src->tensors()[i];
    BOOST_TEST(t.name == plan[i].name, "creation order kept");
    BOOST_TEST((t.dtype == plan[i].dtype), t.name);
    BOOST_TEST(same_bytes(src->read(t), data[i]), t.name);
  }
}

BOOST_AUTO_TEST_CASE(groups_scalars_empty_tensors_and_attributes) {
  TempDir dir;
  const std::string path = dir / "state.h5";
  Attributes root = root_of("state");
  root.set("model_config", std::string(R"({"b": 2, "a": 1})"));
  root.set("round", std::int64_t{7});
  root.set("loss", 0.25);
  root.set("sizes", std::vector<std::int64_t>{784, 10});
  TensorInfo scalar{"state", "scale", {}, DType::F32, {}};
  TensorInfo empty{"state/exp_avg", "w", {0, 4}, DType::F32, {}};
  TensorInfo tagged{"tensors", "w", {4}, DType::F32, {}};
  tagged.attrs.set("cat_dim", std::int64_t{1});
  auto sink = create_sink(path, root, {scalar, empty, tagged});
  sink->write(0, Tensor::from_floats({}, std::vector<float>{3.5f}));
  sink->write(1, Tensor({0, 4}));
  sink->write(2, ramp({4}, DType::F32));
  sink->set_attribute("step", std::int64_t{100});
  sink->set_group_attribute("state", "step", std::int64_t{42});
  sink->commit();

  auto src = open_source(path);
  const Attributes& a = src->attributes();
  BOOST_TEST(a.get_string("loco_format").value() == "loco");
  BOOST_TEST(a.get_int("loco_version").value() == 1);
  BOOST_TEST(a.get_string("kind").value() == "state");
  BOOST_TEST(a.get_int("round").value() == 7);
  BOOST_TEST(a.get_int("step").value() == 100);
  BOOST_TEST(a.get_double("loss").value() == 0.25);
  BOOST_TEST((std::get<std::vector<std::int64_t>>(*a.find("sizes")) == std::vector<std::int64_t>{784, 10}));
  BOOST_TEST(a.get_string("producer").has_value());
  BOOST_TEST(model_config(*src) == R"({"a":1,"b":2})", "canonical: sorted keys, no spaces");
  BOOST_TEST(src->group_attributes("state").get_int("step").value() == 42);
  const TensorInfo& s = src->get("scale", "state");
  BOOST_TEST(s.shape.empty());
  BOOST_TEST(src->read(s).f32()[0] == 3.5f);
  BOOST_TEST((src->get("w", "state/exp_avg").shape == Shape{0, 4}));
  BOOST_TEST(src->get("w").attrs.get_int("cat_dim").value() == 1);
  BOOST_TEST((file_kind(*src) == Kind::State));
}

BOOST_AUTO_TEST_CASE(row_blocks_in_any_order_equal_whole_writes) {
  TempDir dir;
  const std::string path = dir / "rows.h5";
  Tensor t = ramp({7, 5}, DType::F32, 0.125);
  auto sink = create_sink(path, root_of("model"), {{"tensors", "x", {7, 5}, DType::F32, {}}});
  const auto bytes = t.bytes();
  const std::size_t row = 5 * sizeof(float);
  sink->write_rows(0, 4, 3, bytes.subspan(4 * row, 3 * row));
  sink->write_rows(0, 0, 4, bytes.subspan(0, 4 * row));
  sink->commit();
  auto src = open_source(path);
  const TensorInfo& info = src->get("x");
  BOOST_TEST(same_bytes(src->read(info), t));
  std::vector<std::byte> part(2 * row);
  src->read_rows(info, 2, 2, part);
  BOOST_TEST(std::memcmp(part.data(), bytes.data() + 2 * row, part.size()) == 0);
  BOOST_TEST(rows_per_block(info, 3 * row) == 3);
  BOOST_TEST(rows_per_block(info, 1) == 1, "at least one row");
}

BOOST_AUTO_TEST_CASE(missing_rows_fail_the_commit_and_leave_nothing) {
  TempDir dir;
  const std::string path = dir / "partial.h5";
  {
    auto sink = create_sink(path, root_of("model"), {{"tensors", "x", {4, 2}, DType::F32, {}}});
    std::vector<float> half(4, 1.0f);
    sink->write_rows(0, 0, 2, std::as_bytes(std::span(half)));
    expect_error(ErrorKind::Internal, "2 of 4 rows", [&] { sink->commit(); });
  }
  BOOST_TEST(fs::is_empty(dir.path), "no file and no temporary left behind");
}

BOOST_AUTO_TEST_CASE(an_abandoned_sink_never_replaces_the_old_file) {
  TempDir dir;
  const std::string path = dir / "m.h5";
  write_tensor_set(path, root_of("model"), [] {
    TensorSet s;
    s.add("a", Tensor::from_floats({2}, std::vector<float>{1, 2}));
    return s;
  }());
  const std::string before = tensors_checksum(*open_source(path));
  forget_inputs();  // the next step of a pipeline, as if in a new process
  {
    auto sink = create_sink(path, root_of("model"), {{"tensors", "a", {2}, DType::F32, {}}});
    sink->write(0, Tensor::from_floats({2}, std::vector<float>{5, 6}));
    // destroyed without commit, as when a tool fails half way
  }
  BOOST_TEST(tensors_checksum(*open_source(path)) == before);
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++files;
  BOOST_TEST(files == 1u);
}

BOOST_AUTO_TEST_CASE(checksum_is_content_not_storage) {
  TempDir dir;
  TensorSet s;
  s.add("b", ramp({3}, DType::F32));
  s.add("a", ramp({2, 2}, DType::F32));
  write_tensor_set(dir / "x.h5", root_of("model"), s);
  TensorSet r;  // other order, same content
  r.add("a", ramp({2, 2}, DType::F32));
  r.add("b", ramp({3}, DType::F32));
  write_tensor_set(dir / "y.h5", root_of("model"), r);
  const std::string cx = tensors_checksum(*open_source(dir / "x.h5"));
  BOOST_TEST(cx == tensors_checksum(*open_source(dir / "y.h5")));
  SetChecksum expect;
  for (const auto& e : s) expect.add(e.name, loco::tensor_checksum(e.tensor));
  BOOST_TEST(cx == format_checksum(expect.digest()));
  r.at("b").f32()[1] += 1.0f;
  write_tensor_set(dir / "z.h5", root_of("model"), r);
  BOOST_TEST(cx != tensors_checksum(*open_source(dir / "z.h5")));
}

BOOST_AUTO_TEST_CASE(kinds_and_configs_are_checked_when_files_combine) {
  TempDir dir;
  auto make = [&](const std::string& name, const std::string& kind, const std::string& cfg) {
    Attributes a = root_of(kind);
    if (!cfg.empty()) a.set("model_config", cfg);
    TensorSet s;
    s.add("w", Tensor({1}));
    write_tensor_set(dir / name, a, s);
    return open_source(dir / name);
  };
  auto m = make("m.h5", "model", R"({"arch":"mlp","sizes":[4,2]})");
  auto m2 = make("m2.h5", "model", R"({"sizes":[4,2], "arch":"mlp"})");
  auto d = make("d.h5", "delta", R"({"arch":"mlp","sizes":[4,3]})");
  auto none = make("n.h5", "model", "");
  expect_kind(*m, {Kind::Model});
  expect_error(ErrorKind::BadInput, "is a delta file, expected model", [&] { expect_kind(*d, {Kind::Model}); });
  check_same_config(*m, *m2);
  expect_error(ErrorKind::BadInput, "key 'sizes' is [4,2] vs [4,3]", [&] { check_same_config(*m, *d); });
  expect_error(ErrorKind::BadInput, "model_config", [&] { check_same_config(*m, *none); });
  expect_error(ErrorKind::BadInput, "not a JSON object", [&] { canonical_json("[1]", "x"); });
}

namespace {
// Writes an HDF5 file with h5's C API directly, as another program would.
void write_foreign(const std::string& path, const char* marker, long long version, const char* kind, hid_t dtype,
                   bool creation_order) {
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  if (creation_order) H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
  auto str_attr = [&](const char* name, const char* value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, std::strlen(value) + 1);  // fixed-length, as some writers do
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, value);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t);
  };
  if (marker != nullptr) str_attr("loco_format", marker);
  if (kind != nullptr) str_attr("kind", kind);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, "loco_version", H5T_STD_I32BE, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_LLONG, &version);
  H5Aclose(a);
  hid_t g = H5Gcreate2(f, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t dims[1] = {4};
  hid_t dsp = H5Screate_simple(1, dims, nullptr);
  const double vals[4] = {1.5, -2.0, 0.0, 1e-3};
  for (const char* name : {"z", "a"}) {
    hid_t ds = H5Dcreate2(g, name, dtype, dsp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals);
    H5Dclose(ds);
  }
  H5Sclose(dsp), H5Sclose(sp), H5Gclose(g), H5Fclose(f), H5Pclose(fcpl);
}
}  // namespace

BOOST_AUTO_TEST_CASE(files_from_other_writers_are_read) {
  TempDir dir;
  const std::string path = dir / "foreign.h5";
  write_foreign(path, "loco", 1, "delta", H5T_IEEE_F64BE, false);  // big-endian, no creation order
  auto src = open_source(path);
  BOOST_REQUIRE_EQUAL(src->tensors().size(), 2u);
  BOOST_TEST(src->tensors()[0].name == "a", "name order without creation-order tracking");
  const Tensor t = src->read(src->get("z"));
  BOOST_TEST((t.dtype() == DType::F64));
  BOOST_TEST(t.as<double>()[0] == 1.5);
  BOOST_TEST(t.as<double>()[3] == 1e-3);
  BOOST_TEST(src->read(src->get("a"), DType::F32).f32()[1] == -2.0f);
  BOOST_TEST((file_kind(*src) == Kind::Delta));
}

namespace {
// A loco model file written with the HDF5 C API: a contiguous float32 "c" [6, 5] and a chunked
// (and deflated) float32 "k" [6, 5].
void write_layouts(const std::string& path, const std::vector<float>& vals) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  auto str_attr = [&](const char* name, const char* value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, std::strlen(value) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, value);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t);
  };
  str_attr("loco_format", "loco");
  str_attr("kind", "model");
  const long long version = 1;
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, "loco_version", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_LLONG, &version);
  H5Aclose(a), H5Sclose(sp);
  hid_t g = H5Gcreate2(f, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t dims[2] = {6, 5}, chunk[2] = {2, 5};
  hid_t dsp = H5Screate_simple(2, dims, nullptr);
  hid_t ds = H5Dcreate2(g, "c", H5T_IEEE_F32LE, dsp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals.data());
  H5Dclose(ds);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 2, chunk);
  H5Pset_deflate(dcpl, 1);
  ds = H5Dcreate2(g, "k", H5T_IEEE_F32LE, dsp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals.data());
  H5Dclose(ds), H5Pclose(dcpl), H5Sclose(dsp), H5Gclose(g), H5Fclose(f);
}
}  // namespace

BOOST_AUTO_TEST_CASE(raw_reads_of_contiguous_tensors_equal_read_rows) {
  TempDir dir;
  // Every dtype loco writes is stored contiguous and little-endian: raw bytes are read_rows' bytes.
  std::vector<TensorInfo> plan;
  for (DType dt : kAllDTypes) plan.push_back({"tensors", std::string(dtype_name(dt)), {7, 3}, dt, {}});
  plan.push_back({"tensors", "empty", {0, 3}, DType::F32, {}});
  auto sink = create_sink(dir / "all.h5", root_of("model"), plan);
  for (std::size_t i = 0; i + 1 < plan.size(); ++i) sink->write(i, ramp({7, 3}, plan[i].dtype));
  sink->write(plan.size() - 1, Tensor({0, 3}, DType::F32));
  sink->commit();
  auto src = open_source(dir / "all.h5");
  for (const TensorInfo& t : src->tensors()) {
    const auto off = contiguous_offset(*src, t);
    if (t.name == "empty") {
      BOOST_TEST(!off.has_value(), "an empty tensor has no storage");
      continue;
    }
    BOOST_REQUIRE_MESSAGE(off.has_value(), t.name);
    const std::size_t row_bytes = 3 * dtype_size(t.dtype);
    std::vector<std::byte> raw(2 * row_bytes), rows(2 * row_bytes);
    read_raw(*src, *off + 4 * row_bytes, raw);  // rows [4, 6)
    src->read_rows(t, 4, 2, rows);
    BOOST_TEST((raw == rows), t.name);
  }

  // A chunked (deflated) dataset has no offset; raw reads from several threads at once.
  std::vector<float> vals(30);
  for (std::size_t i = 0; i < vals.size(); ++i) vals[i] = 0.25f * static_cast<float>(i) - 3.0f;
  {
    const std::string path = dir / "layouts.h5";
    write_layouts(path, vals);
    auto s = open_source(path);
    BOOST_TEST(!contiguous_offset(*s, s->get("k")).has_value(), "chunked");
    const auto off = contiguous_offset(*s, s->get("c"));
    BOOST_REQUIRE(off.has_value());
    std::vector<std::vector<float>> got(2, std::vector<float>(vals.size()));
    std::vector<std::thread> threads;
    for (int k = 0; k < 2; ++k)
      threads.emplace_back([&, k] {
        for (int rep = 0; rep < 200; ++rep)
          for (std::size_t r = static_cast<std::size_t>(k); r < 6; r += 2)
            read_raw(*s, *off + r * 20, std::as_writable_bytes(std::span(got[k].data() + r * 5, 5)));
      });
    for (auto& th : threads) th.join();
    for (std::size_t r = 0; r < 6; ++r)
      for (std::size_t c = 0; c < 5; ++c) BOOST_TEST(got[r % 2][r * 5 + c] == vals[r * 5 + c]);
    std::vector<std::byte> tail(16);
    expect_error(ErrorKind::BadInput, "truncated", [&] { read_raw(*s, std::filesystem::file_size(path) - 8, tail); });
  }

  // A big-endian dataset is not raw-readable.
  write_foreign(dir / "be.h5", "loco", 1, "model", H5T_IEEE_F64BE, true);
  auto be = open_source(dir / "be.h5");
  BOOST_TEST(!contiguous_offset(*be, be->get("z")).has_value());
  // Other formats have no HDF5 offsets; read_raw is for loco sources only.
  TensorSet st;
  st.add("w", ramp({4}, DType::F32));
  write_tensor_set(dir / "w.safetensors", root_of("model"), st);
  auto sts = open_source(dir / "w.safetensors");
  BOOST_TEST(!contiguous_offset(*sts, sts->get("w")).has_value());
  std::vector<std::byte> four(4);
  expect_error(ErrorKind::Internal, "w.safetensors", [&] { read_raw(*sts, 0, four); });
}

BOOST_AUTO_TEST_CASE(bad_files_are_refused_with_the_reason) {
  TempDir dir;
  write_foreign(dir / "nomarker.h5", nullptr, 1, "model", H5T_IEEE_F32LE, true);
  expect_error(ErrorKind::BadInput, "not a loco file", [&] { open_source(dir / "nomarker.h5"); });
  write_foreign(dir / "v2.h5", "loco", 2, "model", H5T_IEEE_F32LE, true);
  expect_error(ErrorKind::BadInput, "version 2", [&] { open_source(dir / "v2.h5"); });
  write_foreign(dir / "kind.h5", "loco", 1, "weights", H5T_IEEE_F32LE, true);
  expect_error(ErrorKind::BadInput, "kind 'weights'", [&] { open_source(dir / "kind.h5"); });

  // Truncated: a valid file cut short.
  TensorSet s;
  s.add("w", ramp({1000}, DType::F32));
  write_tensor_set(dir / "ok.h5", root_of("model"), s);
  const auto size = fs::file_size(dir / "ok.h5");
  fs::copy_file(dir / "ok.h5", dir / "cut.h5");
  fs::resize_file(dir / "cut.h5", size / 2);
  expect_error(ErrorKind::BadInput, "cut.h5", [&] {
    auto src = open_source(dir / "cut.h5");
    src->read(src->get("w"));
  });
  // Not a tensor file at all, empty, missing, a folder.
  std::ofstream(dir / "text.h5") << "hello, world\n";
  expect_error(ErrorKind::BadInput, "not a tensor file", [&] { open_source(dir / "text.h5"); });
  std::ofstream(dir / "empty.h5").flush();
  expect_error(ErrorKind::BadInput, "empty file", [&] { open_source(dir / "empty.h5"); });
  expect_error(ErrorKind::Io, "missing.h5: cannot open", [&] { open_source(dir / "missing.h5"); });
  expect_error(ErrorKind::BadInput, "is a folder", [&] { open_source(dir.path.string()); });
}

BOOST_AUTO_TEST_CASE(output_names_are_checked) {
  TempDir dir;
  expect_error(ErrorKind::Usage, "extension", [&] { format_for_output(dir / "m.bin"); });
  BOOST_TEST((format_for_output(dir / "m.safetensors") == Format::Safetensors));
  BOOST_TEST((format_for_output("-") == Format::Loco));
  expect_error(ErrorKind::BadInput, "HDF5 link name", [&] {
    create_sink(dir / "m.h5", root_of("model"), {{"tensors", "a/b", {1}, DType::F32, {}}});
  });
  expect_error(ErrorKind::Io, "does not exist", [&] {
    create_sink(dir / "no/such/m.h5", root_of("model"), {{"tensors", "a", {1}, DType::F32, {}}});
  });
}

BOOST_AUTO_TEST_SUITE_END()
