// Layer kernels: forward against their definitions, backward against central finite differences
// in double precision, and the float instantiation against the double one.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fd.hpp"
#include "loco/model/layers.hpp"

using namespace loco::model;
using namespace loco::model::test;
using std::int64_t;

namespace {

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// Naive y = x·wᵀ + b + residual from the definition.
std::vector<double> naive_linear(const std::vector<double>& x, const std::vector<double>& w, const double* b,
                                 const double* res, int64_t n, int64_t in, int64_t out) {
  std::vector<double> y(static_cast<std::size_t>(n * out));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? b[o] : 0.0;
      for (int64_t k = 0; k < in; ++k) s += x[i * in + k] * w[o * in + k];
      y[i * out + o] = s + (res ? res[i * out + o] : 0.0);
    }
  }
  return y;
}

// Naive causal attention from the definition, one (batch, head) at a time.
std::vector<double> naive_attention(const std::vector<double>& qkv, const layers::AttentionShape& s) {
  const int64_t d = s.heads * s.head_dim, ld = 3 * d;
  std::vector<double> y(static_cast<std::size_t>(s.batch * s.seq * d));
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      for (int64_t i = 0; i < s.seq; ++i) {
        std::vector<double> sc(static_cast<std::size_t>(i + 1));
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          double dotp = 0;
          for (int64_t c = 0; c < s.head_dim; ++c) {
            dotp += qkv[(b * s.seq + i) * ld + h * s.head_dim + c] * qkv[(b * s.seq + j) * ld + d + h * s.head_dim + c];
          }
          sc[j] = dotp / std::sqrt(static_cast<double>(s.head_dim));
          m = std::max(m, sc[j]);
        }
        double z = 0;
        for (auto& v : sc) z += (v = std::exp(v - m));
        for (int64_t c = 0; c < s.head_dim; ++c) {
          double acc = 0;
          for (int64_t j = 0; j <= i; ++j) acc += sc[j] / z * qkv[(b * s.seq + j) * ld + 2 * d + h * s.head_dim + c];
          y[(b * s.seq + i) * d + h * s.head_dim + c] = acc;
        }
      }
    }
  }
  return y;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(layers_suite)

BOOST_AUTO_TEST_CASE(linear_forward_matches_definition_across_chunks) {
  // n = 300 spans five row chunks; out = 70 and in = 530 span several weight-gradient tiles.
  for (auto [n, in, out] : {std::tuple<int64_t, int64_t, int64_t>{3, 4, 2}, {300, 530, 70}}) {
    const auto x = random_vector(n * in, -1, 1, 1), w = random_vector(out * in, -1, 1, 2);
    const auto b = random_vector(out, -1, 1, 3), res = random_vector(n * out, -1, 1, 4);
    std::vector<double> y(res);
    layers::linear_forward(x.data(), w.data(), b.data(), y.data(), y.data(), n, in, out);  // residual in place
    const auto ref = naive_linear(x, w, b.data(), res.data(), n, in, out);
    std::vector<double> y2(static_cast<std::size_t>(n * out));
    layers::linear_forward(x.data(), w.data(), static_cast<const double*>(nullptr), static_cast<const double*>(nullptr),
                           y2.data(), n, in, out);
    const auto ref2 = naive_linear(x, w, nullptr, nullptr, n, in, out);
    // Each output sums `in` products of magnitude ≤ 1: rounding ≤ in·u·in in the worst case.
    const double tol = static_cast<double>(in * in) * std::numeric_limits<double>::epsilon();
    for (std::size_t i = 0; i < y.size(); ++i) {
      BOOST_REQUIRE_SMALL(y[i] - ref[i], tol);
      BOOST_REQUIRE_SMALL(y2[i] - ref2[i], tol);
    }
  }
}

BOOST_AUTO_TEST_CASE(linear_backward_matches_definition_across_chunks) {
  // n = 2100 splits the weight gradient into row chunks summed through scratch; out = 140 and
  // in = 530 span two tiles each.
  const int64_t n = 2100, in = 530, out = 140;
  const auto x = random_vector(n * in, -1, 1, 5), w = random_vector(out * in, -1, 1, 6);
  const auto dy = random_vector(n * out, -1, 1, 7);
  std::vector<double> dx(n * in), dw(out * in), db(out);
  std::vector<double> scratch(static_cast<std::size_t>(layers::linear_backward_scratch(n, in, out)));
  BOOST_TEST(scratch.size() > 0u);
  layers::linear_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), n, in, out, scratch.data());
  // Sums of at most n products of magnitude ≤ 1: rounding ≤ n·u·n.
  const double tol = static_cast<double>(n * n) * std::numeric_limits<double>::epsilon();
  double err_dx = 0, err_dw = 0, err_db = 0;
  for (int64_t i = 0; i < n; i += 7) {  // every 7th row meets every row chunk
    for (int64_t k = 0; k < in; ++k) {
      double s = 0;
      for (int64_t o = 0; o < out; ++o) s += dy[i * out + o] * w[o * in + k];
      err_dx = std::max(err_dx, std::abs(dx[i * in + k] - s));
    }
  }
  for (int64_t o = 0; o < out; ++o) {
    double sb = 0;
    for (int64_t i = 0; i < n; ++i) sb += dy[i * out + o];
    err_db = std::max(err_db, std::abs(db[o] - sb));
    for (int64_t k = 0; k < in; ++k) {
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += dy[i * out + o] * x[i * in + k];
      err_dw = std::max(err_dw, std::abs(dw[o * in + k] - s));
    }
  }
  BOOST_TEST(err_dx <= tol);
  BOOST_TEST(err_dw <= tol);
  BOOST_TEST(err_db <= tol);
}

BOOST_AUTO_TEST_CASE(linear_gradient_finite_differences) {
  const int64_t n = 5, in = 4, out = 3;
  auto x = random_vector(n * in, -1, 1, 10), w = random_vector(out * in, -1, 1, 11), b = random_vector(out, -1, 1, 12);
  auto res = random_vector(n * out, -1, 1, 13);
  const auto r = random_vector(n * out, -1, 1, 14);  // loss = Σ r ⊙ y
  auto loss = [&] {
    std::vector<double> y(n * out);
    layers::linear_forward(x.data(), w.data(), b.data(), res.data(), y.data(), n, in, out);
    return dot(r, y);
  };
  std::vector<double> dx(n * in), dw(out * in), db(out);
  BOOST_TEST(layers::linear_backward_scratch(n, in, out) == 0);
  layers::linear_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), n, in, out,
                          static_cast<double*>(nullptr));
  BOOST_TEST(check_gradient(x, dx, loss, "linear dx") > 0.1);
  BOOST_TEST(check_gradient(w, dw, loss, "linear dw") > 0.1);
  BOOST_TEST(check_gradient(b, db, loss, "linear db") > 0.1);
  BOOST_TEST(check_gradient(res, r, loss, "linear residual") > 0.1);
  // Optional outputs may be skipped.
  std::vector<double> dw2(out * in);
  layers::linear_backward(x.data(), w.data(), r.data(), static_cast<double*>(nullptr), dw2.data(),
                          static_cast<double*>(nullptr), n, in, out, static_cast<double*>(nullptr));
  BOOST_TEST(dw2 == dw);
}

BOOST_AUTO_TEST_CASE(embedding_forward_and_gradient) {
  // d = 130 spans three column blocks of the backward pass.
  for (const int64_t d : {3, 130}) {
    const int64_t rows = 4, n = 6;
    const std::vector<std::int32_t> ids{2, 0, 2, 3, 2, 1};
    auto table = random_vector(rows * d, -1, 1, 20);
    const auto base = random_vector(n * d, -1, 1, 21);
    const auto r = random_vector(n * d, -1, 1, 22);
    std::vector<double> y(n * d);
    layers::embedding_forward(ids.data(), table.data(), y.data(), n, d, false);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < d; ++c) BOOST_REQUIRE(y[i * d + c] == table[ids[i] * d + c]);
    auto loss = [&] {
      std::vector<double> z(base);
      layers::embedding_forward(ids.data(), table.data(), z.data(), n, d, true);
      return dot(r, z);
    };
    // embedding_backward accumulates: start from a known offset and subtract it.
    std::vector<double> dt(rows * d, 0.5);
    layers::embedding_backward(ids.data(), r.data(), dt.data(), n, d);
    for (auto& v : dt) v -= 0.5;
    BOOST_TEST(check_gradient(table, dt, loss, "embedding dtable, d = " + std::to_string(d)) > 0.1);
  }
}

BOOST_AUTO_TEST_CASE(layernorm_normalizes_rows) {
  const int64_t n = 7, d = 50;
  const auto x = random_vector(n * d, -3, 5, 30);
  const std::vector<double> ones(d, 1.0), zeros(d, 0.0);
  std::vector<double> y(n * d), mean(n), rstd(n);
  const double eps = 1e-5;
  layers::layernorm_forward(x.data(), ones.data(), zeros.data(), y.data(), mean.data(), rstd.data(), n, d, eps);
  for (int64_t i = 0; i < n; ++i) {
    double m = 0, v = 0, xm = 0, xv = 0;
    for (int64_t c = 0; c < d; ++c) xm += x[i * d + c] / d;
    for (int64_t c = 0; c < d; ++c) xv += (x[i * d + c] - xm) * (x[i * d + c] - xm) / d;
    for (int64_t c = 0; c < d; ++c) m += y[i * d + c] / d;
    for (int64_t c = 0; c < d; ++c) v += (y[i * d + c] - m) * (y[i * d + c] - m) / d;
    BOOST_TEST(std::abs(m) < 1e-14);
    // The output variance is var/(var + eps), exactly 1 − eps/(var + eps) in exact arithmetic.
    BOOST_TEST(std::abs(v - xv / (xv + eps)) < 1e-13);
    BOOST_TEST(std::abs(mean[i] - xm) < 1e-14);
    BOOST_TEST(std::abs(rstd[i] - 1 / std::sqrt(xv + eps)) < 1e-13);
  }
}

BOOST_AUTO_TEST_CASE(layernorm_gradient_finite_differences) {
  // d = 130 spans three column blocks of the gamma/beta reduction.
  for (const auto& [n, d] : {std::pair<int64_t, int64_t>{4, 6}, {3, 130}}) {
    auto x = random_vector(n * d, -2, 2, 31), gamma = random_vector(d, 0.5, 1.5, 32);
    auto beta = random_vector(d, -1, 1, 33);
    const auto r = random_vector(n * d, -1, 1, 34);
    const double eps = 1e-5;
    auto loss = [&] {
      std::vector<double> y(n * d), m(n), s(n);
      layers::layernorm_forward(x.data(), gamma.data(), beta.data(), y.data(), m.data(), s.data(), n, d, eps);
      return dot(r, y);
    };
    std::vector<double> y(n * d), m(n), s(n);
    layers::layernorm_forward(x.data(), gamma.data(), beta.data(), y.data(), m.data(), s.data(), n, d, eps);
    std::vector<double> dx(n * d), dg(d), db(d);
    layers::layernorm_backward(x.data(), gamma.data(), m.data(), s.data(), r.data(), dx.data(), dg.data(), db.data(), n,
                               d, false);
    const auto tag = " (d = " + std::to_string(d) + ")";
    BOOST_TEST(check_gradient(x, dx, loss, "layernorm dx" + tag) > 0.1);
    BOOST_TEST(check_gradient(gamma, dg, loss, "layernorm dgamma" + tag) > 0.1);
    BOOST_TEST(check_gradient(beta, db, loss, "layernorm dbeta" + tag) > 0.1);
    // accumulate_dx adds to what is there.
    std::vector<double> acc(n * d, 2.0);
    layers::layernorm_backward(x.data(), gamma.data(), m.data(), s.data(), r.data(), acc.data(), dg.data(), db.data(),
                               n, d, true);
    for (std::size_t i = 0; i < acc.size(); ++i) BOOST_REQUIRE(std::abs(acc[i] - 2.0 - dx[i]) < 1e-14);
  }
}

BOOST_AUTO_TEST_CASE(gelu_tanh_known_values) {
  // x/2·(1 + tanh(√(2/π)(x + 0.044715x³))) evaluated to 20 digits with mpmath.
  const std::vector<double> xs{-3, -1, -0.5, 0, 0.5, 1, 2, 3};
  const std::vector<double> want{
      -0.0036373920817730188, -0.15880800939172329522, -0.15428599017485607796, 0.0,
      0.34571400982514392204, 0.84119199060827670478,  1.9545976940877750188,   2.9963626079182269812};
  std::vector<double> y(xs.size());
  layers::gelu_forward(xs.data(), y.data(), static_cast<int64_t>(xs.size()));
  for (std::size_t i = 0; i < xs.size(); ++i)
    BOOST_TEST(std::abs(y[i] - want[i]) <= 4e-16 * std::max(1.0, std::abs(want[i])));
  // float: Eigen's vectorized tanh is accurate to a few ulp; allow 8 ulp of the result scale.
  const auto xf = to_float(xs);
  std::vector<float> yf(xs.size());
  layers::gelu_forward(xf.data(), yf.data(), static_cast<int64_t>(xs.size()));
  for (std::size_t i = 0; i < xs.size(); ++i) {
    BOOST_TEST(std::abs(yf[i] - want[i]) <=
               8 * std::numeric_limits<float>::epsilon() * std::max(1.0, std::abs(want[i])));
  }
}

BOOST_AUTO_TEST_CASE(gelu_and_relu_gradients_finite_differences) {
  const int64_t n = 600;  // more than one internal block of 256
  auto x = random_vector(n, -4, 4, 40);
  const auto r = random_vector(n, -1, 1, 41);
  auto gelu_loss = [&] {
    std::vector<double> y(n);
    layers::gelu_forward(x.data(), y.data(), n);
    return dot(r, y);
  };
  std::vector<double> dx(r);
  layers::gelu_backward(x.data(), dx.data(), dx.data(), n);  // in place
  BOOST_TEST(check_gradient(x, dx, gelu_loss, "gelu") > 0.1);

  // Keep ReLU inputs away from the kink so central differences are valid.
  for (auto& v : x) v = v < 0 ? std::min(v, -0.01) : std::max(v, 0.01);
  auto relu_loss = [&] {
    std::vector<double> y(n);
    layers::relu_forward(x.data(), y.data(), n);
    return dot(r, y);
  };
  std::vector<double> y(n), dr(r);
  layers::relu_forward(x.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) BOOST_TEST(y[i] == std::max(0.0, x[i]));
  layers::relu_backward(y.data(), dr.data(), dr.data(), n);
  BOOST_TEST(check_gradient(x, dr, relu_loss, "relu") > 0.1);
}

BOOST_AUTO_TEST_CASE(cross_entropy_known_values) {
  // Uniform logits: loss ln C per row. All tie: the first arg-max (class 0) counts as correct.
  const int64_t n = 3, c = 5;
  const std::vector<double> z(n * c, 0.7);
  const std::vector<std::int32_t> t{0, 3, 4};
  const auto ce = layers::softmax_cross_entropy(z.data(), t.data(), static_cast<double*>(nullptr), n, c, 1.0);
  BOOST_TEST(std::abs(ce.loss_sum - 3 * std::log(5.0)) < 1e-14);
  BOOST_TEST(ce.correct == 1);
  // logits (0, 0, ln 2): p = (1/4, 1/4, 1/2); target 2 costs ln 2 and is correct, target 1 costs ln 4.
  const std::vector<double> z2{0, 0, std::log(2.0), 0, 0, std::log(2.0)};
  const std::vector<std::int32_t> t2{2, 1};
  std::vector<double> g(6);
  const auto ce2 = layers::softmax_cross_entropy(z2.data(), t2.data(), g.data(), 2, 3, 0.5);
  BOOST_TEST(std::abs(ce2.loss_sum - (std::log(2.0) + std::log(4.0))) < 1e-14);
  BOOST_TEST(ce2.correct == 1);
  const std::vector<double> want{0.125, 0.125, -0.25, 0.125, -0.375, 0.25};
  for (int i = 0; i < 6; ++i) BOOST_TEST(std::abs(g[i] - want[i]) < 1e-15);
  // Large logits do not overflow (log-sum-exp is shifted by the maximum).
  const std::vector<double> z3{1000, 0};
  const std::vector<std::int32_t> t3{1};
  BOOST_TEST(
      std::abs(layers::softmax_cross_entropy(z3.data(), t3.data(), static_cast<double*>(nullptr), 1, 2, 1.0).loss_sum -
               1000.0) < 1e-12);
}

BOOST_AUTO_TEST_CASE(cross_entropy_gradient_finite_differences) {
  const int64_t n = 6, c = 7;
  auto z = random_vector(n * c, -3, 3, 50);
  const std::vector<std::int32_t> t{0, 6, 3, 3, 1, 5};
  const double scale = 1.0 / n;
  auto loss = [&] {
    return layers::softmax_cross_entropy(z.data(), t.data(), static_cast<double*>(nullptr), n, c, scale).loss_sum *
           scale;
  };
  std::vector<double> g(n * c);
  layers::softmax_cross_entropy(z.data(), t.data(), g.data(), n, c, scale);
  BOOST_TEST(check_gradient(z, g, loss, "softmax cross-entropy") > 0.01);
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t k = 0; k < c; ++k) s += g[i * c + k];
    BOOST_TEST(std::abs(s) < 1e-16 * c);  // softmax − onehot sums to zero
  }
  // In place: dlogits may alias logits.
  std::vector<double> zz(z);
  layers::softmax_cross_entropy(zz.data(), t.data(), zz.data(), n, c, scale);
  BOOST_TEST(zz == g);
}

BOOST_AUTO_TEST_CASE(cross_entropy_bits_do_not_depend_on_where_the_buffers_start) {
  // Issue 12: Eigen peels scalar iterations up to the destination's first vector-aligned address,
  // and its scalar and packet exp differ in the last bit, so the bits once depended on the buffers'
  // addresses (in place and out of place disagreed on an AVX2 machine). Shifting the logits and the
  // gradient by every offset up to 16 elements covers every residue of a 64-byte packet, for
  // float and double: loss, accuracy and gradient must be the same bits at every offset.
  auto check = [](auto zero) {
    using T = decltype(zero);
    const int64_t n = 5, c = 37;  // an odd row length: rows start at every residue too
    const auto z64 = random_vector(n * c, -4, 4, 51);
    const std::vector<T> z(z64.begin(), z64.end());
    const std::vector<std::int32_t> t{0, 36, 5, 17, 2};
    const T scale = T(1) / T(n);
    std::vector<T> g(n * c);
    const auto ref = layers::softmax_cross_entropy(z.data(), t.data(), g.data(), n, c, scale);
    for (int64_t off = 0; off <= 16; ++off) {
      std::vector<T> zs(off + n * c), gs(off + 1 + n * c);
      std::copy(z.begin(), z.end(), zs.begin() + off);
      const auto out = layers::softmax_cross_entropy(zs.data() + off, t.data(), gs.data() + off + 1, n, c, scale);
      BOOST_TEST(out.loss_sum == ref.loss_sum);
      BOOST_TEST(out.correct == ref.correct);
      BOOST_TEST(std::equal(g.begin(), g.end(), gs.begin() + off + 1), "out of place, offset " << off);
      const auto eval = layers::softmax_cross_entropy(zs.data() + off, t.data(), static_cast<T*>(nullptr), n, c, scale);
      BOOST_TEST(eval.loss_sum == ref.loss_sum);
      layers::softmax_cross_entropy(zs.data() + off, t.data(), zs.data() + off, n, c, scale);  // in place
      BOOST_TEST(std::equal(g.begin(), g.end(), zs.begin() + off), "in place, offset " << off);
    }
  };
  check(0.0);
  check(0.0f);
}

BOOST_AUTO_TEST_CASE(attention_forward_matches_definition) {
  // seq 70 crosses the 64-row causal block; 3 heads of 4 columns.
  const layers::AttentionShape s{2, 70, 3, 4};
  const int64_t d = s.heads * s.head_dim, n = s.batch * s.seq;
  const auto qkv = random_vector(n * 3 * d, -1.5, 1.5, 60);
  std::vector<double> y(n * d), lse(s.batch * s.heads * s.seq);
  layers::attention_forward(qkv.data(), y.data(), lse.data(), s);
  const auto ref = naive_attention(qkv, s);
  for (std::size_t i = 0; i < y.size(); ++i) BOOST_REQUIRE_SMALL(y[i] - ref[i], 1e-13);
  // lse of query 0 is its own scaled self-score (one key).
  double q0k0 = 0;
  for (int64_t c = 0; c < s.head_dim; ++c) q0k0 += qkv[c] * qkv[d + c];
  BOOST_TEST(std::abs(lse[0] - q0k0 / 2.0) < 1e-14);
  // Causality: changing the last position's q, k, v leaves every earlier output unchanged.
  auto qkv2 = qkv;
  for (int64_t c = 0; c < 3 * d; ++c) qkv2[(s.seq - 1) * 3 * d + c] += 1.0;
  std::vector<double> y2(n * d);
  layers::attention_forward(qkv2.data(), y2.data(), lse.data(), s);
  for (int64_t i = 0; i < (s.seq - 1) * d; ++i) BOOST_REQUIRE(y2[i] == y[i]);
  BOOST_TEST(y2[(s.seq - 1) * d] != y[(s.seq - 1) * d]);
}

BOOST_AUTO_TEST_CASE(attention_gradient_finite_differences) {
  for (const layers::AttentionShape s : {layers::AttentionShape{2, 5, 2, 3}, layers::AttentionShape{1, 67, 2, 2}}) {
    const int64_t d = s.heads * s.head_dim, n = s.batch * s.seq;
    auto qkv = random_vector(n * 3 * d, -1, 1, 70 + s.seq);
    const auto r = random_vector(n * d, -1, 1, 80 + s.seq);
    std::vector<double> lse(s.batch * s.heads * s.seq);
    auto loss = [&] {
      std::vector<double> y(n * d), l(lse.size());
      layers::attention_forward(qkv.data(), y.data(), l.data(), s);
      return dot(r, y);
    };
    std::vector<double> y(n * d), dqkv(n * 3 * d, 123.0);
    layers::attention_forward(qkv.data(), y.data(), lse.data(), s);
    layers::attention_backward(qkv.data(), y.data(), lse.data(), r.data(), dqkv.data(), s);
    BOOST_TEST(check_gradient(qkv, dqkv, loss, "attention dqkv (seq " + std::to_string(s.seq) + ")") > 0.1);
  }
}

BOOST_AUTO_TEST_CASE(float_kernels_agree_with_double) {
  // The float instantiation runs the same code; its results match double within float rounding.
  const layers::AttentionShape s{2, 33, 2, 8};
  const int64_t d = s.heads * s.head_dim, n = s.batch * s.seq, f = 4 * d;
  const auto x = random_vector(n * d, -1, 1, 90), w = random_vector(f * d, -0.3, 0.3, 91);
  const auto qkv = random_vector(n * 3 * d, -1, 1, 92);
  const auto xf = to_float(x), wf = to_float(w), qkvf = to_float(qkv);
  std::vector<double> y(n * f), a(n * d), lse(s.batch * s.heads * s.seq);
  std::vector<float> yf(n * f), af(n * d), lsef(lse.size());
  layers::linear_forward(x.data(), w.data(), static_cast<const double*>(nullptr), static_cast<const double*>(nullptr),
                         y.data(), n, d, f);
  layers::linear_forward(xf.data(), wf.data(), static_cast<const float*>(nullptr), static_cast<const float*>(nullptr),
                         yf.data(), n, d, f);
  layers::gelu_forward(y.data(), y.data(), n * f);
  layers::gelu_forward(yf.data(), yf.data(), n * f);
  layers::attention_forward(qkv.data(), a.data(), lse.data(), s);
  layers::attention_forward(qkvf.data(), af.data(), lsef.data(), s);
  // Linear + GELU: inputs rounded to float and a d-term sum give |error| ≤ (d + 2)·u·Σ|x·w|, and
  // GELU (slope ≤ 1.13) adds its own few ulp of tanh error.
  const double u = std::numeric_limits<float>::epsilon() / 2;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t o = 0; o < f; ++o) {
      double mag = 0;
      for (int64_t k = 0; k < d; ++k) mag += std::abs(x[i * d + k] * w[o * d + k]);
      const double tol = 1.13 * (d + 2) * u * mag + 8 * u * std::max(1.0, std::abs(y[i * f + o]));
      BOOST_REQUIRE_SMALL(y[i * f + o] - yf[i * f + o], tol);
    }
  }
  // Attention: scores q·k/√8 (|q|, |k| ≤ 1, |score| ≤ 2.9) carry ≤ (8 + 2)·u·2.9 ≈ 29u error,
  // softmax over ≤ 33 keys adds ≤ 35u relative to each probability, and the weighted sum of
  // |v| ≤ 1 another 35u: outputs within ~2·29u + 35u + 35u < 128u, lse within 128u·max(1, |lse|).
  for (std::size_t i = 0; i < a.size(); ++i) BOOST_REQUIRE_SMALL(a[i] - af[i], 128 * u);
  for (std::size_t i = 0; i < lse.size(); ++i)
    BOOST_REQUIRE_SMALL(lse[i] - lsef[i], 128 * u * std::max(1.0, std::abs(lse[i])));
}

BOOST_AUTO_TEST_SUITE_END()
