// Shared helpers of the optimizer tests: tensor builders and a tolerance in float ulps of a magnitude.
#pragma once

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "loco/core/error.hpp"
#include "loco/core/tensor.hpp"
#include "loco/optim/optimizer.hpp"

namespace loco::optim::test {

// Unit roundoff of float32: every correctly rounded float operation has relative error ≤ u.
inline constexpr double kU = 0x1p-24;

inline Tensor vec(const std::vector<float>& v) { return Tensor::from_floats({static_cast<std::int64_t>(v.size())}, v); }

inline TensorSet one_tensor(const std::string& name, const std::vector<float>& v) {
  TensorSet s;
  s.add(name, vec(v));
  return s;
}

inline std::vector<float> values(const Tensor& t) {
  auto s = t.f32();
  return {s.begin(), s.end()};
}

// got[i] must equal want[i] within ulps·u·scale[i]: scale is the magnitude of the terms the
// float computation rounded (built by the reference as it runs), so the bound is the usual
// forward error bound of a short chain of correctly rounded operations.
inline void check_close(std::span<const float> got, const std::vector<double>& want, const std::vector<double>& scale,
                        double ulps, const std::string& what) {
  BOOST_TEST_REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]);
    const double tol = ulps * kU * scale[i];
    BOOST_TEST(err <= tol, what << "[" << i << "]: got " << got[i] << ", want " << want[i] << ", |err| " << err
                                << " > tol " << tol);
  }
}

inline bool same_bits(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
  return true;
}

// A double-precision transcription of an update rule, run next to the float optimizer. p and the
// slots hold the exact values; sp and the slot scales accumulate the magnitudes of every term
// the float code rounds (the rule evaluated on absolute values), step after step.
struct Reference {
  std::vector<double> p, sp;
  std::map<std::string, std::vector<double>> slot, sslot;
  std::int64_t t = 0;
  explicit Reference(const std::vector<float>& p0) : p(p0.begin(), p0.end()), sp(p0.size(), 0.0) {}
  virtual ~Reference() = default;
  virtual void step(const std::vector<float>& g, double lr) = 0;
  std::vector<double>& s(const std::string& name) {
    auto& v = slot[name];
    if (v.empty()) v.assign(p.size(), 0.0);
    return v;
  }
  std::vector<double>& ss(const std::string& name) {
    auto& v = sslot[name];
    if (v.empty()) v.assign(p.size(), 0.0);
    return v;
  }
};

// Runs spec on one tensor "w" from p0 through grads (lrs[k] for step k) and compares parameters
// and every reference slot with the reference after each step within ulps.
inline void run_and_compare(const OptimizerSpec& spec, Reference& ref, const std::vector<float>& p0,
                            const std::vector<std::vector<float>>& grads, const std::vector<double>& lrs, double ulps) {
  auto opt = make_optimizer(spec);
  TensorSet params = one_tensor("w", p0);
  OptimizerState state = opt->make_state(params);
  for (std::size_t k = 0; k < grads.size(); ++k) {
    TensorSet g = one_tensor("w", grads[k]);
    opt->step(params, g, state, lrs[k]);
    ref.step(grads[k], lrs[k]);
    const std::string tag = spec.name + " step " + std::to_string(k + 1);
    BOOST_TEST(state.step == static_cast<std::int64_t>(k + 1));
    check_close(params.at("w").f32(), ref.p, ref.sp, ulps, tag + " param");
    for (auto& [name, values] : ref.slot)
      check_close(state.slot(name).at("w").f32(), values, ref.ss(name), ulps, tag + " " + name);
  }
}

}  // namespace loco::optim::test
