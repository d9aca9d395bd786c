// loco-convert: convert tensor files between loco HDF5 and safetensors, optionally changing dtype.
#include "loco/cli/tool.hpp"
#include "loco/core/error.hpp"
#include "loco/io/convert.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-convert", "Convert tensor files between loco HDF5 and safetensors");
  tool.set_description(
      "The input format is taken from the file's content, the output format from OUT's extension (.h5 or "
      ".safetensors; '-' writes a loco HDF5 file to stdout). Tensors are copied block by block, so memory stays "
      "bounded whatever the file size. Metadata are carried across where both formats hold them.");
  tool.add_example("loco-convert model.h5 model.safetensors", "Export a model for PyTorch (safetensors.torch.load_file).");
  tool.add_example("loco-convert --dtype bf16 model.safetensors model-bf16.h5", "Import and store floats as bfloat16.");
  auto& app = tool.app();
  std::string in, out, dtype;
  app.add_option("IN", in, "Input tensor file ('-' for stdin)")->required();
  app.add_option("OUT", out, "Output file: .h5 or .safetensors ('-' for stdout, loco HDF5)")->required();
  app.add_option("--dtype", dtype, "Store floating-point tensors as this type")->check(CLI::IsMember({"f32", "f16", "bf16", "f64"}));
  return tool.run(argc, argv, [&] {
    loco::io::ConvertOptions opt;
    if (!dtype.empty()) opt.dtype = loco::parse_dtype(dtype);
    loco::io::convert_file(in, out, opt);
    return 0;
  });
}
