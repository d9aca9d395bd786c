// Evaluation of a model on a data file (loss, accuracy, perplexity, bits per byte) and text
// sampling from a GPT.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "loco/data/file.hpp"
#include "loco/model/model.hpp"

namespace loco::eval {

// Classifiers: every example once. GPT: the token stream cut into consecutive windows of ctx+1
// tokens that overlap by one (window w starts at w·ctx), the last one shorter when the stream
// does not divide, so every token after the first is predicted exactly once, from at most ctx
// tokens of context (a stream of exactly ctx+1 tokens is one window). batch: examples or windows
// per forward pass.
model::LossStats evaluate(model::Model& net, const TensorSet& params, const data::DataFile& data, std::int64_t batch);

// {"loss", "count", "accuracy", "model", "data"}, plus for a GPT "perplexity" and
// "bits_per_byte" (the mean loss in bits: one token is one byte).
nlohmann::json metrics_json(const model::ModelConfig& config, const model::LossStats& s, const std::string& model_path,
                            const std::string& data_path);

// Generates n tokens after prompt: greedy (temperature 0) or sampled from softmax(logits/T)
// with the counter-based generator under seed. Returns prompt + generated tokens.
std::vector<std::int32_t> sample(model::Model& net, const TensorSet& params, std::vector<std::int32_t> prompt,
                                 std::int64_t n, double temperature, std::uint64_t seed);

}  // namespace loco::eval
