// Format conversion by streaming row blocks from a TensorSource into a TensorSink (or a universal
// checkpoint folder through write_ucp).
#include "loco/io/convert.hpp"

#include <algorithm>
#include <optional>
#include <vector>

#include <tbb/parallel_pipeline.h>

#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/core/provenance.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/safetensors_index.hpp"
#include "loco/io/source.hpp"
#include "loco/io/ucp.hpp"

namespace loco::io {
namespace {

// Attributes the loco writer sets itself; they are not copied from the input.
bool written_by_sink(const std::string& name) {
  return name == "loco_format" || name == "loco_version" || name == "producer" || name == "created";
}

}  // namespace

bool is_folder_output(const std::string& out) { return out.size() > 1 && out.ends_with('/'); }

void convert_file(const std::string& in, const std::string& out, const ConvertOptions& opt) {
  if (opt.ucp) {
    if (opt.dtype) throw_error(ErrorKind::Usage, "--dtype does not apply to a universal checkpoint output");
    std::unique_ptr<TensorSource> src = open_source(in);
    write_ucp(*src, out, opt.block_bytes);
    return;
  }
  const Format out_format = format_for_output(out);
  if (opt.max_shard_bytes > 0 && out_format != Format::Safetensors)
    throw_error(ErrorKind::Usage, "{}: --max-shard-size applies to a .safetensors output", out);
  std::unique_ptr<TensorSource> src = open_source(in);
  const Kind kind = file_kind(*src);

  Attributes root;
  const char* flat_name = out_format == Format::Gguf ? "GGUF" : "safetensors";
  if (out_format != Format::Loco && (kind == Kind::Data || kind == Kind::Compressed))
    throw_error(ErrorKind::Usage, "{}: a {} file cannot be written as {}, which holds only model tensors", in,
                kind_name(kind), flat_name);
  if (out_format == Format::Safetensors) {
    root.set("format", std::string("pt"));
    for (const auto& e : src->attributes())
      if (e.name != "format" && !written_by_sink(e.name)) root.set(e.name, e.value);
    root.set("producer", producer());
  } else if (out_format == Format::Gguf) {
    // The attributes as they are (gguf_metadata becomes its key/values again, the others
    // loco.<name> keys), without loco's bookkeeping and the default kind, so that a GGUF file
    // read into loco and written back has the key/values it had.
    for (const auto& e : src->attributes()) {
      if (written_by_sink(e.name) || e.name == "source_format") continue;
      if (e.name == "kind" && kind == Kind::Model) continue;
      root.set(e.name, e.value);
    }
  } else {
    root.set("kind", std::string(kind_name(kind)));
    for (const auto& e : src->attributes()) {
      if (written_by_sink(e.name) || e.name == "kind") continue;
      // safetensors metadata are strings: model_config must still be JSON to be carried.
      if (e.name == "model_config") {
        const auto cfg = src->attributes().get_string("model_config");
        if (cfg) root.set("model_config", canonical_json(*cfg, in));
        continue;
      }
      root.set(e.name, e.value);  // typed by the reader, also from safetensors (io/metadata.hpp)
    }
    if (src->format() != "loco") root.set("source_format", std::string(src->format()));
  }

  std::vector<const TensorInfo*> inputs;
  std::vector<TensorInfo> plan;
  std::size_t dropped = 0;
  for (const auto& t : src->tensors()) {
    if (opt.tensors_only && t.group != "tensors") continue;
    if (out_format != Format::Loco && t.group != "tensors") {
      ++dropped;
      continue;
    }
    TensorInfo o = t;
    if (opt.dtype && is_floating(t.dtype)) o.dtype = *opt.dtype;
    inputs.push_back(&t);
    plan.push_back(std::move(o));
  }
  if (dropped > 0)
    log::warn("{}: {} tensors outside /tensors (optimizer state) have no place in {} and were not copied", in, dropped,
              flat_name);

  auto sink = opt.max_shard_bytes > 0 ? create_sharded_safetensors_sink(out, root, plan, opt.max_shard_bytes)
                                      : create_sink(out, out_format, root, plan);
  if (out_format == Format::Loco) {
    // Group attributes (optimizer step counts on /state, codec parameters on compressed tensors).
    std::vector<std::string> groups;
    for (const auto& t : plan)
      for (std::size_t p = t.group.find('/');; p = t.group.find('/', p + 1)) {
        const std::string g = t.group.substr(0, p);
        if (std::find(groups.begin(), groups.end(), g) == groups.end()) groups.push_back(g);
        if (p == std::string::npos) break;
      }
    for (const auto& g : groups)
      for (const auto& e : src->group_attributes(g)) sink->set_group_attribute(g, e.name, e.value);
  }
  // The copy as a pipeline of row blocks: read (and convert) block k+1 while block k is written,
  // so the two copies through the page cache overlap. That needs reads that never enter HDF5
  // while the sink does: loco reads go raw at the dataset's offset when every dataset is
  // contiguous. Otherwise blocks go one at a time.
  struct Block {
    std::size_t tensor = 0;
    std::int64_t row0 = 0, rows = 0;
    std::vector<std::byte> stored, converted;
  };
  std::vector<std::optional<std::uint64_t>> raw(plan.size());
  // Readers other than loco's never enter HDF5 (safetensors, torch, universal checkpoints and
  // safetensors indexes read with pread), so their reads overlap the sink's writes.
  bool overlap = src->format() != "loco";
  if (src->format() == "loco") {
    overlap = true;
    for (std::size_t i = 0; i < plan.size(); ++i) {
      raw[i] = inputs[i]->numel() > 0 ? contiguous_offset(*src, *inputs[i]) : std::optional<std::uint64_t>(0);
      overlap = overlap && raw[i].has_value();
    }
  }
  std::size_t next_tensor = 0;
  std::int64_t next_row = 0;
  std::vector<Block> ring(overlap ? 3 : 1);
  std::size_t ring_pos = 0;
  auto read_stage = [&](tbb::flow_control& fc) -> Block* {
    while (next_tensor < plan.size() && next_row >= inputs[next_tensor]->rows()) ++next_tensor, next_row = 0;
    if (next_tensor == plan.size()) {
      fc.stop();
      return nullptr;
    }
    const TensorInfo& t = *inputs[next_tensor];
    Block& b = ring[ring_pos++ % ring.size()];
    b.tensor = next_tensor;
    b.row0 = next_row;
    b.rows = std::min(rows_per_block(t, opt.block_bytes), t.rows() - next_row);
    next_row += b.rows;
    const std::size_t elems = static_cast<std::size_t>(b.rows * t.row_elements());
    const std::size_t row_bytes = static_cast<std::size_t>(t.row_elements()) * dtype_size(t.dtype);
    b.stored.resize(elems * dtype_size(t.dtype));
    if (overlap && src->format() == "loco") {
      if (!b.stored.empty()) read_raw(*src, *raw[b.tensor] + static_cast<std::uint64_t>(b.row0) * row_bytes, b.stored);
    } else {
      src->read_rows(t, b.row0, b.rows, b.stored);
    }
    const DType to = plan[b.tensor].dtype;
    if (to != t.dtype) {
      b.converted.resize(elems * dtype_size(to));
      convert_elements(t.dtype, b.stored.data(), to, b.converted.data(), elems);
    }
    return &b;
  };
  auto write_stage = [&](Block* b) {
    const bool same = plan[b->tensor].dtype == inputs[b->tensor]->dtype;
    sink->write_rows(b->tensor, b->row0, b->rows, same ? b->stored : b->converted);
  };
  // Tokens in flight ≤ ring size − 1, so a block is never refilled while it is being written.
  tbb::parallel_pipeline(overlap ? ring.size() - 1 : 1,
                         tbb::make_filter<void, Block*>(tbb::filter_mode::serial_in_order, read_stage) &
                             tbb::make_filter<Block*, void>(tbb::filter_mode::serial_in_order, write_stage));
  sink->commit();
}

}  // namespace loco::io
