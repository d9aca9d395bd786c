// FedProx's proximal gradient and SCAFFOLD's control variates (see federated.hpp).
#include "loco/train/federated.hpp"

#include <cmath>

#include "loco/core/error.hpp"
#include "loco/io/source.hpp"
#include "loco/optim/optimizer.hpp"

namespace loco::train {
namespace {

// The float32 values of `name` in other, checking it matches ref (a programming error otherwise:
// every set here is built from the same model).
std::span<const float> matching(const TensorSet& other, const TensorSet::Entry& ref, std::string_view what) {
  if (!other.contains(ref.name)) throw_error(ErrorKind::Internal, "{}: no tensor {}", what, ref.name);
  const Tensor& t = other.at(ref.name);
  if (t.shape() != ref.tensor.shape() || t.dtype() != DType::F32)
    throw_error(ErrorKind::Internal, "{}: tensor {} has shape {}, expected {} (float32)", what, ref.name,
                shape_string(t.shape()), shape_string(ref.tensor.shape()));
  return t.f32();
}

void check_sizes(const TensorSet& a, const TensorSet& b, std::string_view what) {
  if (a.size() != b.size()) throw_error(ErrorKind::Internal, "{}: {} tensors, expected {}", what, b.size(), a.size());
}

}  // namespace

void add_proximal_gradient(TensorSet& grads, const TensorSet& params, const TensorSet& anchor, double mu) {
  if (!(mu >= 0.0) || !std::isfinite(mu))
    throw_error(ErrorKind::Usage, "--prox-mu must be finite and >= 0, not {}", mu);
  check_sizes(grads, params, "proximal term: parameters");
  check_sizes(grads, anchor, "proximal term: global model");
  if (mu == 0.0) return;
  const float m = static_cast<float>(mu);
  for (auto& e : grads) {
    const auto p = matching(params, e, "proximal term: parameters");
    const auto a = matching(anchor, e, "proximal term: global model");
    auto g = e.tensor.f32();
    for (std::size_t k = 0; k < g.size(); ++k) g[k] += m * (p[k] - a[k]);
  }
}

void add_control_correction(TensorSet& grads, const TensorSet& client_control, const TensorSet& server_control) {
  check_sizes(grads, client_control, "control correction: client control");
  check_sizes(grads, server_control, "control correction: server control");
  for (auto& e : grads) {
    const auto ci = matching(client_control, e, "control correction: client control");
    const auto c = matching(server_control, e, "control correction: server control");
    auto g = e.tensor.f32();
    for (std::size_t k = 0; k < g.size(); ++k) g[k] += c[k] - ci[k];
  }
}

TensorSet update_client_control(TensorSet& client_control, const TensorSet& server_control, const TensorSet& x,
                                const TensorSet& y, double lr_sum) {
  if (!(lr_sum > 0.0) || !std::isfinite(lr_sum))
    throw_error(ErrorKind::Usage, "SCAFFOLD: the local steps' learning rates sum to {}; it must be > 0", lr_sum);
  check_sizes(client_control, server_control, "control update: server control");
  check_sizes(client_control, x, "control update: global model");
  check_sizes(client_control, y, "control update: local model");
  TensorSet delta;
  for (auto& e : client_control) {
    const auto c = matching(server_control, e, "control update: server control");
    const auto xv = matching(x, e, "control update: global model");
    const auto yv = matching(y, e, "control update: local model");
    Tensor d(e.tensor.shape());
    auto dv = d.f32();
    auto ci = e.tensor.f32();
    bool finite = true;
    for (std::size_t k = 0; k < ci.size(); ++k) {
      const double old = ci[k];
      const float updated = static_cast<float>(old - static_cast<double>(c[k]) +
                                               (static_cast<double>(xv[k]) - static_cast<double>(yv[k])) / lr_sum);
      finite = finite && std::isfinite(updated);
      ci[k] = updated;
      dv[k] = static_cast<float>(old - static_cast<double>(updated));
    }
    if (!finite)
      throw_error(ErrorKind::Numeric, "SCAFFOLD: the client control variate of {} became non-finite", e.name);
    delta.add(e.name, std::move(d));
  }
  return delta;
}

TensorSet zero_control(const TensorSet& params) {
  TensorSet out;
  for (const auto& e : params) out.add(e.name, Tensor(e.tensor.shape()));
  return out;
}

TensorSet read_client_control(const std::string& state_path, const TensorSet& params) {
  auto src = io::open_source(state_path, /*register_input=*/false);
  const std::string group = optim::state_group(kControlSlot);
  if (src->group(group).empty())
    throw_error(ErrorKind::BadInput, "{}: no SCAFFOLD control variate ({}): a state made without --scaffold-control",
                state_path, group);
  TensorSet out;
  for (const auto& e : params) {
    const io::TensorInfo* t = src->find(e.name, group);
    if (t == nullptr) throw_error(ErrorKind::BadInput, "{}: {} lacks tensor {}", state_path, group, e.name);
    if (t->shape != e.tensor.shape())
      throw_error(ErrorKind::BadInput, "{}: {}/{} has shape {}, expected {}", state_path, group, e.name,
                  shape_string(t->shape), shape_string(e.tensor.shape()));
    Tensor v = src->read(*t, DType::F32);
    for (float f : v.f32())
      if (!std::isfinite(f)) throw_error(ErrorKind::BadInput, "{}: {}/{} is not finite", state_path, group, e.name);
    out.add(e.name, std::move(v));
  }
  return out;
}

}  // namespace loco::train
