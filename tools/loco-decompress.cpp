// loco-decompress: decode every tensor of a compressed file into a dense file, one tensor at a time.
#include "loco/cli/tool.hpp"
#include "loco/compress/codec.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-decompress", "Decode a compressed file into a dense delta or model file");
  tool.set_description(
      "Reads the codec chain, shape, dtype and seed recorded in each group /tensors/NAME of a compressed file and "
      "writes "
      "the decoded tensor as /tensors/NAME of a dense file of the kind the input was made from (source_kind), with the "
      "input's root attributes. Tensors are decoded one at a time.");
  tool.add_example("loco-decompress delta.c.h5 -o delta.d.h5", "Decode for loco-aggregate or loco-inspect.");
  tool.add_example("loco-compress d.h5 -o - --codec sign | loco-decompress - -o back.h5", "Round trip through a pipe.");
  auto& app = tool.app();
  std::string in, out;
  app.add_option("IN", in, "Compressed file ('-' for stdin)")->required();
  loco::cli::add_output_option(app, out, "dense file");
  return tool.run(argc, argv, [&] {
    loco::compress::decompress_file(in, out);
    return 0;
  });
}
