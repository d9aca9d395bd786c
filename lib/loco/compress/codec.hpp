// The codec interface: a codec chain parsed from a SPEC string encodes one float tensor into named
// datasets plus group attributes (the layout of a compressed loco file) and decodes them back.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loco/core/attributes.hpp"
#include "loco/core/tensor.hpp"

namespace loco::io {
class TensorSource;
}

namespace loco::compress {

// One stage of a SPEC: "name[:key=value[,key=value]]".
struct StageSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> params;
};

// Splits SPEC = stage('+'stage)* into stages. Throws Error(Usage) on empty stages, names or keys,
// a key without '=', or a key given twice. Names and keys are not checked here (Codec does).
std::vector<StageSpec> parse_spec(std::string_view spec);
// The SPEC of the stages: "name:key=value,...+name..." in the order given, nothing else (parse_spec
// reads it back as the same stages).
std::string format_spec(const std::vector<StageSpec>& stages);
// The stage names a SPEC may use (the help, the bash completion).
const std::vector<std::string>& codec_names();

// Shape and type of one dataset a codec writes for a tensor, known before encoding.
struct DatasetLayout {
  std::string name;
  Shape shape;
  DType dtype;
};

// One encoded tensor: what goes into the group /tensors/<name> of a compressed file.
struct Encoded {
  Attributes attrs;  // codec, spec, shape, dtype, d, seed, stream, the stages' parameters
  std::vector<std::pair<std::string, Tensor>> datasets;
  // Bytes of the datasets (what crosses the network).
  std::int64_t payload_bytes() const;
  // Looks a dataset up; throws Error(BadInput) naming it when absent.
  const Tensor& get(std::string_view name) const;
};

// Where the random numbers of one tensor come from: Rng(seed, stream) with stream derived from
// (round, worker, tensor name) by stream_key(). Codecs whose randomness all workers must share
// (random-k indices) derive it from shared_stream, which leaves the worker out.
struct RandomKey {
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;         // per worker: stochastic rounding
  std::uint64_t shared_stream = 0;  // identical on every worker: random-k indices
};
RandomKey random_key(std::uint64_t seed, std::int64_t round, std::int64_t worker, std::string_view tensor);

// The codec state of one tensor that stateful codecs (powersgd: its warm-start Q) read and update
// across rounds, as named float32 tensors ("powersgd_q").
struct TensorState {
  std::vector<std::pair<std::string, Tensor>> slots;
  // nullptr when absent.
  const Tensor* find(std::string_view slot) const;
  // Adds or replaces a slot.
  void set(std::string_view slot, Tensor t);
};

class Stage;
class Feedback;

// What a codec's encoding of a tensor keeps: every element (cast, quant, sign, qsgd, sketch, powersgd),
// some elements (a leading topk or randk: the indices kept; a kept value that decodes to 0 still
// counts), or some coefficients of a transform (a leading dct_topk).
enum class Selection { All, Elements, Coefficients };

// Where a decoded tensor lives: the tensor itself, or the coefficient domain of a transform codec.
enum class Domain { Tensor, Coefficients };

// The coefficient domain of a transform codec over tensors of one shape (dct_topk: DctDomain in
// dct.hpp, the coefficients tile-major). Encodings with equal domains can be combined coefficient by
// coefficient and transformed back once.
class CoefficientDomain {
 public:
  // Number of coefficients (padded: tiles × tile).
  std::int64_t size() const noexcept { return size_; }
  // The transform stage's canonical spec ("dct_topk:chunk=64,k=4").
  const std::string& transform() const noexcept { return transform_; }
  // The same coefficients (dct_topk: the same chunk and tiling of the same shape), whatever each keeps.
  bool operator==(const CoefficientDomain& o) const noexcept { return shape_ == o.shape_ && identity_ == o.identity_; }
  // The tensor whose coefficients are coef (float32, size() of them; dct_topk: its orthonormal inverse
  // DCT, dropping the padding). Throws Error(BadInput) when coef has another size or dtype.
  Tensor inverse(Tensor coef) const;

 private:
  friend class Codec;
  CoefficientDomain() = default;
  std::shared_ptr<const Stage> stage_;
  Shape shape_;
  std::string transform_;
  std::int64_t size_ = 0;
  std::vector<std::int64_t> identity_;
};

// A chain of codec stages. Stage names: cast, topk, randk, quant, sign, qsgd, dct_topk, sketch,
// powersgd, terngrad. A chain is one stage, or a sparsifier (topk, randk, dct_topk) followed by one value
// codec (cast, quant, sign, qsgd, terngrad) that encodes the kept values, e.g.
// "topk:density=0.02,tile=4096+quant:bits=2". templar's compressor (SparseLoCo's reference) is
// "topk:k=64,tile=2d+quant:bits=2,range=templar"; its encodings record templar_bytes, the bytes
// templar sends for the same selection (detail/templar.hpp).
class Codec {
 public:
  // Parses and validates SPEC; throws Error(Usage) naming the stage and key that is wrong.
  static Codec parse(std::string_view spec);
  Codec(Codec&&) noexcept;
  Codec& operator=(Codec&&) noexcept;
  ~Codec();

  // The canonical spec (every parameter spelled out with its default), recorded in the file.
  const std::string& spec() const noexcept { return spec_; }
  // "topk+quant"
  std::string name() const;
  // True when a stage keeps per-tensor state across rounds (powersgd).
  bool stateful() const;
  // What an encoding keeps: every element, elements (a leading topk or randk) or coefficients (a
  // leading dct_topk).
  Selection selection() const;
  // The coefficient domain of a tensor of this shape for a codec that keeps coefficients, else nullopt.
  std::optional<CoefficientDomain> coefficient_domain(const Shape& shape) const;

  // The datasets encode() writes for a tensor of this shape, in order.
  std::vector<DatasetLayout> layout(const Shape& shape) const;
  // Encodes x (float32). Throws Error(Numeric) naming `what` when x holds NaN or Inf.
  // Deterministic: the same x, key and spec give the same bytes for any thread count.
  // decoded_dtype is recorded as the dtype the decoded tensor is written in.
  // state: the tensor's codec state, read and updated by stateful codecs (nullptr: start fresh and
  // keep nothing); a state slot of the wrong shape is ignored as if absent.
  Encoded encode(const Tensor& x, const RandomKey& key, DType decoded_dtype = DType::F32,
                 std::string_view what = "tensor", TensorState* state = nullptr) const;

 private:
  Codec();
  std::string spec_;
  std::vector<std::unique_ptr<Stage>> stages_;
  // decode() and selection_mask() of an encoding of this codec with the recorded shape and key.
  Tensor decode_as(const Encoded& e, const Shape& shape, const RandomKey& key, Domain domain, bool mask) const;
  friend Tensor decode(const Encoded&, Domain);
  friend Tensor selection_mask(const Encoded&, Domain);
};

// Decodes an encoded tensor to float32 of its recorded shape, using only what Encoded holds
// (the spec, shape, seed and stream attributes and the datasets). Throws Error(BadInput) when
// attributes or datasets are missing or of the wrong size.
Tensor decode(const Encoded& e);
// In Domain::Coefficients, the kept coefficients of an encoding whose codec keeps coefficients, as a
// float32 vector over its coefficient domain (zeros elsewhere); any value stage is decoded as usual.
// Throws Error(BadInput) also for a codec without coefficients.
Tensor decode(const Encoded& e, Domain domain);
// What the encoding selected, over the same domain as decode(e, domain): 1 where its sparsifier kept
// an element (or coefficient), 0 elsewhere, computed by the sparsifier's own decoder scattering ones
// (topk to its stored indices, randk to the indices regenerated from the recorded key); an empty
// tensor when the codec keeps every element. Throws Error(Usage) for a codec that keeps coefficients
// in Domain::Tensor, Error(BadInput) as decode.
Tensor selection_mask(const Encoded& e, Domain domain);

// Summary of a compress_file run.
struct CompressSummary {
  std::int64_t tensors = 0;
  std::int64_t raw_bytes = 0;
  std::int64_t payload_bytes = 0;
  // What templar would send (Encoded's templar_bytes attribute) when every tensor records it.
  std::optional<std::int64_t> templar_bytes;
};

// Reads the compressed tensor /tensors/<name> of a compressed file (group attributes and datasets).
// Throws Error(BadInput) when the file holds no such compressed tensor.
Encoded read_encoded(const io::TensorSource& src, std::string_view name);
// Names of the compressed tensors of a compressed file, in file order.
std::vector<std::string> encoded_tensor_names(const io::TensorSource& src);

// Compresses every tensor of /tensors of `in` (a delta or model file; floating-point tensors) with
// codec into the compressed file `out`, one tensor at a time. Random streams are keyed by
// (seed, the input's round and worker attributes, tensor name). "-" reads stdin / writes stdout.
// state: for stateful codecs (powersgd), a state file (kind state, /state/<slot>/<tensor>) read
// when it exists and replaced after the output is written; "" keeps no state.
// Throws Error(BadInput) for compressed or integer inputs, Error(Numeric) on NaN/Inf,
// Error(Usage) for a state file with a stateless codec.
// feedback, feedback_state: error feedback (see feedback.hpp) around the codec, its per-worker state
// in feedback_state (kind state, /state/<slot>/<tensor>, attributes model_config, worker, feedback,
// round), read when the file exists and replaced after the output is written. The output then holds
// the encoded feedback input, records feedback=<spec> and the codec of this round (DGC warm-up).
// Throws Error(Usage) when only one of the two is given or the state path is '-', the output or
// the codec state; Error(BadInput) when the state was written for another model_config, worker or
// feedback kind, or a slot's shape differs from its tensor's.
CompressSummary compress_file(const std::string& in, const std::string& out, const Codec& codec, std::uint64_t seed,
                              const std::string& state = "", const Feedback* feedback = nullptr,
                              const std::string& feedback_state = "");
// Decodes every tensor of a compressed file into a dense file of the kind it was made from.
void decompress_file(const std::string& in, const std::string& out);

}  // namespace loco::compress
