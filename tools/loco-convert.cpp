// loco-convert: convert checkpoints between loco HDF5, safetensors (single or sharded), GGUF, PyTorch .pt and
// DeepSpeed universal checkpoint folders; split them into tensor-parallel shards and consolidate those.
#include "loco/cli/tool.hpp"
#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"
#include "loco/io/convert.hpp"
#include "loco/io/reshard.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-convert",
                       "Convert, shard and consolidate checkpoints (loco HDF5, safetensors, GGUF, .pt, DeepSpeed UCP)");
  tool.set_description(
      "IN is read by its content: loco HDF5, safetensors, a safetensors index (model.safetensors.index.json, read over "
      "its shards), llama.cpp's GGUF (versions 2 and 3: F32, F16, BF16, F64 and integer tensors as stored, Q8_0, "
      "Q4_0 and Q4_1 dequantized to float32, dimensions reversed into row-major order, the key/values kept in the "
      "attribute gguf_metadata), a PyTorch torch.save archive (.pt/.bin) or a DeepSpeed universal checkpoint folder "
      "(zero/<param>/fp32.pt, exp_avg.pt, exp_avg_sq.pt, step.pt). OUT's extension picks the output: .h5, "
      ".safetensors or .gguf ('-' writes loco HDF5 to stdout); OUT ending in '/' (or --to ucp) writes a universal "
      "checkpoint folder. A universal checkpoint becomes parameters in /tensors, Adam moments in "
      "/state/exp_avg and /state/exp_avg_sq, the step in the attribute step of /state, and DeepSpeed's cat_dim, "
      "param_n_sub_params, sub_param_shape and vocab_tensor as per-tensor attributes, so writing it back "
      "reproduces them. Tensors are copied block by block, so memory stays bounded whatever the file size.\n\n"
      "--tp T splits IN into T tensor-parallel shards OUT-0000r-of-0000T.h5 as DeepSpeed's universal loader slices "
      "them: by sub_param_shape, param_n_sub_params and cat_dim where IN carries them, else by the first --cat-dim "
      "rule whose regex matches the start of the name, else replicated; vocab_tensor rows are zero-padded to a "
      "multiple of --vocab-divisible-by times T. --consolidate joins such shards (IN is any one of them) back into "
      "OUT, exactly. --zero D concatenates each group's tensors into one flat vector cut into D equal partitions "
      "(ZeRO stages 1-2), OUT-0000r-of-0000D.h5, with the layout recorded for --consolidate.");
  tool.add_example("loco-convert model.h5 model.safetensors",
                   "Export a model for PyTorch (safetensors.torch.load_file).");
  tool.add_example("loco-convert --tensors-only round-0003.h5 model.h5",
                   "The global model without the outer optimizer's state, for the workers.");
  tool.add_example("loco-convert --dtype bf16 model.safetensors model-bf16.h5", "Import and store floats as bfloat16.");
  tool.add_example("loco-convert --dtype f16 model-Q8_0.gguf model.gguf",
                   "Dequantize a llama.cpp file and store it as float16 GGUF, keeping its key/values.");
  tool.add_example("loco-convert global_step100/ ckpt.h5", "Read a DeepSpeed universal checkpoint folder.");
  tool.add_example("loco-convert ckpt.h5 ucp/global_step100/", "Write it back as a universal checkpoint folder.");
  tool.add_example(
      "loco-convert --max-shard-size 5GB model.h5 hf/model.safetensors",
      "Huggingface-style shards hf/model-00001-of-0000N.safetensors with hf/model.safetensors.index.json.");
  tool.add_example("loco-convert --tp 4 --cat-dim '.*proj\\.weight=1' --cat-dim '.*ln.*=replicate' model.h5 tp.h5",
                   "Four shards tp-00001-of-00004.h5 ...; unmatched tensors without UCP attributes are replicated.");
  tool.add_example("loco-convert --consolidate tp-00001-of-00004.h5 model.h5", "Join the four shards back.");
  tool.add_example("loco-convert --zero 8 ckpt.h5 zero.h5", "Eight flat partitions zero-00001-of-00008.h5 ...");
  auto& app = tool.app();
  std::string in, out, dtype, to, max_shard;
  int tp = 0, zero = 0;
  bool consolidate = false, tensors_only = false;
  std::vector<std::string> cat_dims;
  loco::io::ReshardOptions ro;
  app.add_option("IN", in,
                 "Input: a tensor file (loco, safetensors, GGUF), a safetensors index, a .pt or a universal checkpoint "
                 "folder ('-' for stdin)")
      ->required();
  loco::cli::output_path(app.add_option("OUT", out,
                                        "Output: .h5, .safetensors, .gguf, or a folder (trailing '/') for a universal "
                                        "checkpoint ('-' for stdout, loco HDF5)")
                             ->required());
  app.add_option("--dtype", dtype, "Store floating-point tensors as this type")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "f64"}));
  app.add_option("--to", to, "Output format regardless of OUT's name: ucp (a universal checkpoint folder)")
      ->check(CLI::IsMember({"ucp"}));
  app.add_option("--max-shard-size", max_shard,
                 "Split a .safetensors output into shards of at most this size (5GB, 500MB, 2GiB) with an index JSON");
  auto* tp_opt = app.add_option("--tp", tp, "Split into this many tensor-parallel shards OUT-0000r-of-0000T.h5")
                     ->check(CLI::Range(2, 4096));
  auto* zero_opt =
      app.add_option("--zero", zero, "Split into this many ZeRO-style flat partitions OUT-0000r-of-0000D.h5")
          ->check(CLI::Range(2, 65536));
  auto* cons =
      app.add_flag("--consolidate", consolidate, "Join tensor-parallel or ZeRO shards (IN: any one of them) into OUT");
  app.add_option(
      "--cat-dim", cat_dims,
      "With --tp: REGEX=DIM or REGEX=replicate for tensors without UCP attributes (repeatable; first match wins)");
  app.add_option(
         "--vocab-divisible-by", ro.vocab_divisible_by,
         "With --tp: pad vocab_tensor rows to a multiple of this times T (Megatron's --make-vocab-size-divisible-by)")
      ->default_val(128)
      ->check(CLI::PositiveNumber);
  auto* tonly = app.add_flag(
      "--tensors-only", tensors_only,
      "Copy /tensors and the root attributes, not the optimizer state in /state (the model a worker needs)");
  tonly->excludes(cons);
  tonly->excludes(tp_opt);
  tonly->excludes(zero_opt);
  tp_opt->excludes(cons);
  zero_opt->excludes(cons);
  zero_opt->excludes(tp_opt);
  tool.group(loco::cli::Group::Outputs, {"OUT", "--dtype", "--to", "--max-shard-size"});
  return tool.run(argc, argv, [&] {
    if (consolidate) {
      loco::io::consolidate_tensor_parallel(in, out);
      return 0;
    }
    if (zero > 0) {
      loco::io::split_zero(in, out, zero);
      return 0;
    }
    if (tp > 0) {
      ro.degree = tp;
      for (const auto& r : cat_dims) ro.rules.push_back(loco::io::parse_tp_rule(r));
      loco::io::split_tensor_parallel(in, out, ro);
      return 0;
    }
    if (!cat_dims.empty()) loco::throw_error(loco::ErrorKind::Usage, "--cat-dim applies with --tp");
    loco::io::ConvertOptions opt;
    if (!dtype.empty()) opt.dtype = loco::parse_dtype(dtype);
    if (!max_shard.empty()) opt.max_shard_bytes = loco::parse_byte_size(max_shard, "--max-shard-size");
    opt.ucp = to == "ucp" || loco::io::is_folder_output(out);
    opt.tensors_only = tensors_only;
    loco::io::convert_file(in, out, opt);
    return 0;
  });
}
