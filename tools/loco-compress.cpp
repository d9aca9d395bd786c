// loco-compress: encode every tensor of a delta or model file with a codec chain, one tensor at a time.
#include <iostream>

#include "loco/cli/tool.hpp"
#include "loco/compress/codec.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/core/error.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-compress", "Compress the tensors of a delta or model file with a codec");
  tool.set_description(
      "Encodes each tensor of /tensors with SPEC = name[:key=value[,key=value]], stages chained with '+' (a "
      "sparsifier, "
      "then a codec for its values). Codecs: cast (dtype=bf16|f16), topk (k=N or density=R, default 0.01; tile=T with "
      "uint16 tile-local indices when T <= 65536; exactly k per tile, ties to the larger magnitude then the lower "
      "index; "
      "tile=2d with k=64,chunk=64 is templar's tiling: a matrix (rank > 2: shape[0] x the rest; rank <= 1: 1 x numel) "
      "in "
      "tiles whose sides are the largest divisors of its dimensions not above chunk, min(k, tile) kept per tile, at "
      "least 2 "
      "and even, so vectors of <= 64 and of 64-multiples travel whole), "
      "randk (k or density; rescale=true multiplies by d/k; indices regenerated from the seed, never stored), quant "
      "(bits=1|2|4|8, block=256, rounding=nearest|stochastic, range=minmax|sigma: sigma clips to mean +- 3 standard "
      "deviations; range=templar,sigmas=6 is templar's quantizer over all values of a tensor: centred on their mean, "
      "step sigmas*sd/2^bits around bin 2^(bits-1) (sd the sample standard deviation), decoded by a table of the bins' "
      "means), sign (scaled sign, block=0: one scale per tensor), qsgd "
      "(levels=127, bucket=512, norm=max|l2), dct_topk (DeMo: orthonormal DCT-II over chunk=64 elements, k=4 "
      "coefficients "
      "kept per chunk), sketch (count sketch rows=5 x cols=65536 with hashes from the seed; decoded by the median of "
      "the rows, "
      "then the k largest estimates when k > 0), powersgd (rank=4 with a warm-started Q kept in --state; tensors of "
      "rank < 2 "
      "or with rank*(n+m)*min_rate >= n*m, min_rate=2, are sent dense), terngrad (TernGrad: each tensor clipped to "
      "clip=2.5 standard deviations, then s*sign(g) with probability |g|/s, else 0, s the largest clipped magnitude; "
      "2-bit codes). Every group /tensors/NAME records codec, spec, shape, dtype, seed and the "
      "parameters; the root records raw_bytes and payload_bytes (and templar_bytes, what templar sends for the same "
      "selection: its Rice/bitmap index code, a byte per value and the quantizer's table, for topk:tile=2d alone or "
      "with "
      "quant:range=templar). Random streams are keyed by (--seed, the input's round "
      "and worker, the tensor name): the same inputs give the same bytes for any --threads. NaN or Inf in a tensor "
      "exits 5. Error feedback (--ef KIND with --ef-state FILE, per worker): ef14 (residual e: compress e + delta, "
      "keep e + delta - decoded), ef21 (estimate g: compress delta - g, g += decoded; receivers keep g too), "
      "econtrol:eta=0.1 (EControl, error e and estimate h: compress eta*e + delta - h, e += delta - h - decoded, h += "
      "decoded; receivers keep h too), sparseloco:beta=0.95 (e = beta*e + delta, compress e, e -= decoded), "
      "dgc:momentum=0.9,warmup=0 (u = m*u + delta, v += u, compress v, zero u and v where sent; density "
      "rho^((r+1)/(W+1)) in rounds r < W). The state file records model_config and worker; a state of another model, "
      "worker or kind exits 4.");
  tool.add_example("loco-compress delta.h5 -o delta.c.h5 --codec topk:k=64,tile=2d+quant:bits=2,range=templar",
                   "SparseLoCo as templar sends it: 64 per 64x64 tile, 2-bit values decoded by their bin means.");
  tool.add_example("loco-compress delta.h5 -o delta.c.h5 --codec topk:density=0.02,tile=4096+quant:bits=2,range=sigma",
                   "2% per 4096-entry flat tile, values on a 2-bit 6-sigma grid per 256-value block.");
  tool.add_example("loco-compress - -o - --codec cast:dtype=bf16 < delta.h5 > delta.bf16.h5", "Stream through a pipe.");
  auto& app = tool.app();
  std::string in, out, spec, state, ef, ef_state;
  std::uint64_t seed = 0;
  bool json = false;
  app.add_option("IN", in, "Delta or model file ('-' for stdin)")->required();
  loco::cli::add_output_option(app, out, "compressed file");
  app.add_option("--codec", spec, "Codec SPEC, e.g. topk:density=0.01 or topk:k=1000+quant:bits=4")->required();
  app.add_option("--seed", seed, "Seed of the codecs' random streams (random-k, stochastic rounding)")
      ->capture_default_str();
  loco::cli::output_path(app.add_option(
      "--state", state,
      "Codec state file (PowerSGD's warm-start Q), read when it exists and replaced after OUT is written"));
  app.add_option("--ef", ef,
                 "Error feedback KIND: ef14, ef21, econtrol[:eta=E], sparseloco[:beta=B], dgc[:momentum=M,warmup=W]");
  loco::cli::output_path(
      app.add_option("--ef-state", ef_state,
                     "Error-feedback state of this worker, read when it exists and replaced after OUT is written"));
  app.add_flag("--json", json, "Print tensors, raw_bytes and payload_bytes as JSON on stdout");
  tool.group(loco::cli::Group::Inputs, {"--state", "--ef-state"});
  tool.group(loco::cli::Group::Outputs, {"--json"});
  tool.complete_words("--codec", loco::compress::codec_names());
  return tool.run(argc, argv, [&] {
    const auto codec = loco::compress::Codec::parse(spec);
    if (json && out == "-") throw loco::Error(loco::ErrorKind::Usage, "--json needs -o FILE: stdout carries the file");
    const auto feedback = ef.empty() ? nullptr : loco::compress::parse_feedback(ef);
    const auto s = loco::compress::compress_file(in, out, codec, seed, state, feedback.get(), ef_state);
    if (json)
      std::cout << fmt::format(
                       R"({{"codec":"{}","tensors":{},"raw_bytes":{},"payload_bytes":{}{}}})", codec.spec(), s.tensors,
                       s.raw_bytes, s.payload_bytes,
                       s.templar_bytes ? fmt::format(R"(,"templar_bytes":{})", *s.templar_bytes) : std::string())
                << '\n';
    return 0;
  });
}
