// Tests of error feedback against its definitions: the EF14 identity bit-exact in float32 with
// top-k and quantization, the EF21 estimate update, EControl's recursion (exact identity and a
// hand-computed two-round case), SparseLoCo's decayed accumulator, DGC momentum
// correction with masking and warm-up, a multi-round exact telescoping sum, and the state file.
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <bit>
#include <cmath>
#include <filesystem>
#include <functional>
#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/output.hpp"
#include "loco/io/source.hpp"

namespace fs = std::filesystem;
namespace lc = loco::compress;
using loco::Attributes;
using loco::ErrorKind;
using loco::Tensor;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/loco-feedback-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    fs::remove_all(path);
    loco::io::forget_inputs();
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

Tensor normal(loco::Shape shape, std::uint64_t seed) {
  Tensor t(shape);
  loco::fill_normal(t.f32(), 0.0f, 1.0f, seed, 1);
  return t;
}

Tensor copy(const Tensor& t) {
  Tensor c = Tensor::uninitialized(t.shape());
  std::copy(t.f32().begin(), t.f32().end(), c.f32().begin());
  return c;
}

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

// One round of feedback around a codec: returns the decoded output, fills p.
Tensor round_trip(const lc::Feedback& fb, const lc::Codec& codec, const Tensor& delta, lc::TensorState& st, Tensor& p,
                  std::int64_t round = 0) {
  p = fb.input(delta, st, "test");
  const Tensor d = lc::decode(codec.encode(p, lc::random_key(3, round, 0, "x"), loco::DType::F32, "test"));
  fb.update(p, d, st);
  return copy(d);
}

bool throws_kind(const std::function<void()>& f, ErrorKind k) {
  try {
    f();
  } catch (const loco::Error& e) {
    return e.kind() == k;
  }
  return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(feedback)

// EF14: p = e_old + Δ and e_new = p − D, each bit-exact in float32; with top-k D is p or 0 at every
// element, so D + e_new == p (= Δ + e_old as float32) exactly.
BOOST_AUTO_TEST_CASE(ef14_identity_topk_and_quant) {
  const auto fb = lc::parse_feedback("ef14");
  BOOST_TEST(fb->spec() == "ef14");
  for (const char* spec : {"topk:density=0.1", "quant:bits=4,block=64", "topk:density=0.25+quant:bits=2"}) {
    BOOST_TEST_CONTEXT(spec) {
      const auto codec = lc::Codec::parse(spec);
      const Tensor delta = normal({40, 25}, 11), e_old = normal({40, 25}, 12);
      lc::TensorState st;
      st.set("residual", copy(e_old));
      Tensor p;
      const Tensor d = round_trip(*fb, codec, delta, st, p);
      const auto e_new = st.find("residual")->f32();
      std::int64_t kept = 0, mismatches = 0;
      for (std::size_t i = 0; i < delta.f32().size(); ++i) {
        const float pi = e_old.f32()[i] + delta.f32()[i];
        mismatches += !same_bits(p.f32()[i], pi);
        mismatches += !same_bits(e_new[i], pi - d.f32()[i]);
        if (std::string(spec) == "topk:density=0.1") {
          mismatches += !(d.f32()[i] == 0.0f || same_bits(d.f32()[i], pi));
          mismatches += !same_bits(d.f32()[i] + e_new[i], pi);
          kept += d.f32()[i] != 0.0f;
        } else {
          // e_new = fl(p − D) = (p − D)(1 + ε), |ε| ≤ 2⁻²⁴: the identity holds to that rounding.
          const double err = std::abs(double(d.f32()[i]) + double(e_new[i]) - double(pi));
          mismatches +=
              err > std::ldexp(std::abs(double(pi) - double(d.f32()[i])), -24) + std::ldexp(std::abs(double(pi)), -50);
        }
      }
      BOOST_TEST(mismatches == 0);
      if (std::string(spec) == "topk:density=0.1") BOOST_TEST(kept == 100);
    }
  }
}

// A fresh state is zeros: the first round compresses Δ itself and keeps Δ − D.
BOOST_AUTO_TEST_CASE(ef14_fresh_state_is_zero) {
  const auto fb = lc::parse_feedback("ef14");
  const auto codec = lc::Codec::parse("topk:k=3");
  const Tensor delta = Tensor::from_floats({6}, std::vector<float>{1, -5, 2, 4, -0.5f, 3});
  lc::TensorState st;
  Tensor p;
  const Tensor d = round_trip(*fb, codec, delta, st, p);
  const std::vector<float> want_d{0, -5, 0, 4, 0, 3}, want_e{1, 0, 2, 0, -0.5f, 0};
  for (int i = 0; i < 6; ++i) {
    BOOST_TEST(p.f32()[i] == delta.f32()[i]);
    BOOST_TEST(d.f32()[i] == want_d[i]);
    BOOST_TEST(st.find("residual")->f32()[i] == want_e[i]);
  }
}

// EF21: the codec compresses c = Δ − g_old, and g_new = g_old + D bit-exactly.
BOOST_AUTO_TEST_CASE(ef21_estimate_update) {
  const auto fb = lc::parse_feedback("ef21");
  BOOST_TEST(fb->slots() == std::vector<std::string>{"ef21_g"});
  for (const char* spec : {"topk:density=0.1", "quant:bits=2,block=32"}) {
    BOOST_TEST_CONTEXT(spec) {
      const auto codec = lc::Codec::parse(spec);
      const Tensor delta = normal({500}, 21), g_old = normal({500}, 22);
      lc::TensorState st;
      st.set("ef21_g", copy(g_old));
      Tensor p;
      const Tensor d = round_trip(*fb, codec, delta, st, p);
      const auto g_new = st.find("ef21_g")->f32();
      std::int64_t mismatches = 0;
      for (std::size_t i = 0; i < 500; ++i) {
        mismatches += !same_bits(p.f32()[i], delta.f32()[i] - g_old.f32()[i]);
        mismatches += !same_bits(g_new[i], g_old.f32()[i] + d.f32()[i]);
      }
      BOOST_TEST(mismatches == 0);
    }
  }
  // Hand case: g = 0 first, so round 0 sends C(Δ) and g becomes it; round 1 sends C(Δ − g).
  const auto codec = lc::Codec::parse("topk:k=1");
  lc::TensorState st;
  Tensor p;
  Tensor d = round_trip(*fb, codec, Tensor::from_floats({3}, std::vector<float>{1, -4, 2}), st, p);
  BOOST_TEST(st.find("ef21_g")->f32()[1] == -4.0f);
  d = round_trip(*fb, codec, Tensor::from_floats({3}, std::vector<float>{1, -4, 2}), st, p);
  BOOST_TEST(p.f32()[0] == 1.0f);
  BOOST_TEST(p.f32()[1] == 0.0f);
  BOOST_TEST(d.f32()[2] == 2.0f);  // the largest of Δ − g = (1, 0, 2)
  const std::vector<float> g{0, -4, 2};
  for (int i = 0; i < 3; ++i) BOOST_TEST(st.find("ef21_g")->f32()[i] == g[i]);
}

// EControl (arXiv 2311.05645): p = η·e + (g − h), e' = (e + (g − h)) − D, h' = h + D, each bit-exact in
// float32. With every input a multiple of 2⁻⁶ below 2⁴ and η = 0.5 all of these sums are exact, so the
// paper's identity e' + h' = e + g holds exactly (the error plus the estimate move by the delta only).
BOOST_AUTO_TEST_CASE(econtrol_recursion_and_identity) {
  const auto fb = lc::parse_feedback("econtrol:eta=0.5");
  BOOST_TEST(fb->spec() == "econtrol:eta=0.5");
  BOOST_TEST(lc::parse_feedback("econtrol")->spec() == "econtrol:eta=0.1");
  BOOST_TEST((fb->slots() == std::vector<std::string>{"econtrol_e", "econtrol_h"}));
  const auto dyadic = [](loco::Shape shape, std::uint64_t seed) {
    Tensor t(shape);
    loco::fill_uniform(t.f32(), -1.0f, 1.0f, seed, 1);
    for (float& v : t.f32()) v = std::round(v * 256.0f) / 64.0f;  // multiples of 2⁻⁶ in [−4, 4]
    return t;
  };
  for (const char* spec : {"topk:density=0.1", "quant:bits=4,block=64", "randk:k=50"}) {
    BOOST_TEST_CONTEXT(spec) {
      const auto codec = lc::Codec::parse(spec);
      const Tensor g = dyadic({500}, 51), e_old = dyadic({500}, 52), h_old = dyadic({500}, 53);
      lc::TensorState st;
      st.set("econtrol_e", copy(e_old));
      st.set("econtrol_h", copy(h_old));
      Tensor p;
      const Tensor d = round_trip(*fb, codec, g, st, p);
      const auto e_new = st.find("econtrol_e")->f32(), h_new = st.find("econtrol_h")->f32();
      std::int64_t mismatches = 0;
      for (std::size_t i = 0; i < 500; ++i) {
        const float r = g.f32()[i] - h_old.f32()[i];
        mismatches += !same_bits(p.f32()[i], 0.5f * e_old.f32()[i] + r);
        mismatches += !same_bits(e_new[i], (e_old.f32()[i] + r) - d.f32()[i]);
        mismatches += !same_bits(h_new[i], h_old.f32()[i] + d.f32()[i]);
        if (std::string(spec) != "quant:bits=4,block=64")  // sparsifiers send p itself: D is dyadic too
          mismatches += double(e_new[i]) + double(h_new[i]) != double(e_old.f32()[i]) + double(g.f32()[i]);
      }
      BOOST_TEST(mismatches == 0);
    }
  }
  // η = 0 is EF21: the codec sees g − h and h accumulates D.
  const auto ef21 = lc::parse_feedback("econtrol:eta=0");
  lc::TensorState st;
  st.set("econtrol_e", Tensor::from_floats({3}, std::vector<float>{100, 100, 100}));
  Tensor p;
  round_trip(*ef21, lc::Codec::parse("topk:k=1"), Tensor::from_floats({3}, std::vector<float>{1, -4, 2}), st, p);
  BOOST_TEST(p.f32()[0] == 1.0f);
  BOOST_TEST(p.f32()[1] == -4.0f);
  BOOST_TEST(st.find("econtrol_h")->f32()[1] == -4.0f);
  for (const char* bad : {"econtrol:eta=-0.1", "econtrol:eta=1.5", "econtrol:beta=0.5", "econtrol:eta=x"})
    BOOST_TEST_CONTEXT(bad) {
      BOOST_TEST(throws_kind([&] { lc::parse_feedback(bad); }, ErrorKind::Usage));
    }
}

// EControl by hand, η = 0.5, top-1, from e = h = 0:
// round 0, g = (2, 1):  p = 0.5·0 + (2, 1) = (2, 1); D = (2, 0); e = (2, 1) − (2, 0) = (0, 1); h = (2, 0).
// round 1, g = (2, 2):  g − h = (0, 2); p = 0.5·(0, 1) + (0, 2) = (0, 2.5); D = (0, 2.5);
//                       e = ((0, 1) + (0, 2)) − (0, 2.5) = (0, 0.5); h = (2, 2.5).
// A receiver adding D to its copy of h gets (2, 0), then (2, 2.5): the deltas the server steps with.
BOOST_AUTO_TEST_CASE(econtrol_two_rounds_by_hand) {
  const auto fb = lc::parse_feedback("econtrol:eta=0.5");
  const auto top1 = lc::Codec::parse("topk:k=1");
  lc::TensorState st;
  Tensor p;
  Tensor d = round_trip(*fb, top1, Tensor::from_floats({2}, std::vector<float>{2, 1}), st, p);
  const auto expect = [&](const char* slot, float a, float b) {
    BOOST_TEST_CONTEXT(slot) {
      BOOST_TEST(st.find(slot)->f32()[0] == a);
      BOOST_TEST(st.find(slot)->f32()[1] == b);
    }
  };
  BOOST_TEST(p.f32()[0] == 2.0f);
  BOOST_TEST(p.f32()[1] == 1.0f);
  BOOST_TEST(d.f32()[0] == 2.0f);
  BOOST_TEST(d.f32()[1] == 0.0f);
  expect("econtrol_e", 0.0f, 1.0f);
  expect("econtrol_h", 2.0f, 0.0f);
  d = round_trip(*fb, top1, Tensor::from_floats({2}, std::vector<float>{2, 2}), st, p, 1);
  BOOST_TEST(p.f32()[0] == 0.0f);
  BOOST_TEST(p.f32()[1] == 2.5f);
  BOOST_TEST(d.f32()[0] == 0.0f);
  BOOST_TEST(d.f32()[1] == 2.5f);
  expect("econtrol_e", 0.0f, 0.5f);
  expect("econtrol_h", 2.0f, 2.5f);
}

// SparseLoCo: e ← β·e + Δ is what is compressed, then e ← e − D. β = 0.5 makes β·e exact, so the
// expected value is the same with or without a fused multiply-add.
BOOST_AUTO_TEST_CASE(sparseloco_decayed_accumulator) {
  const auto fb = lc::parse_feedback("sparseloco:beta=0.5");
  BOOST_TEST(fb->spec() == "sparseloco:beta=0.5");
  BOOST_TEST(lc::parse_feedback("sparseloco")->spec() == "sparseloco:beta=0.95");
  const auto codec = lc::Codec::parse("topk:density=0.05,tile=100+quant:bits=2,range=sigma");
  const Tensor delta = normal({1000}, 31), e_old = normal({1000}, 32);
  lc::TensorState st;
  st.set("residual", copy(e_old));
  Tensor p;
  const Tensor d = round_trip(*fb, codec, delta, st, p);
  std::int64_t mismatches = 0;
  for (std::size_t i = 0; i < 1000; ++i) {
    const float acc = 0.5f * e_old.f32()[i] + delta.f32()[i];
    mismatches += !same_bits(p.f32()[i], acc);
    mismatches += !same_bits(st.find("residual")->f32()[i], acc - d.f32()[i]);
  }
  BOOST_TEST(mismatches == 0);
  // Hand case, beta = 0.5, top-1: e = (2, 4) → p = 0.5·e + (1, −1) = (2, 1); sends (2, 0); e = (0, 1).
  lc::TensorState hs;
  hs.set("residual", Tensor::from_floats({2}, std::vector<float>{2, 4}));
  const Tensor hd =
      round_trip(*fb, lc::Codec::parse("topk:k=1"), Tensor::from_floats({2}, std::vector<float>{1, -1}), hs, p);
  BOOST_TEST(hd.f32()[0] == 2.0f);
  BOOST_TEST(hd.f32()[1] == 0.0f);
  BOOST_TEST(hs.find("residual")->f32()[0] == 0.0f);
  BOOST_TEST(hs.find("residual")->f32()[1] == 1.0f);
}

// DGC: u ← m·u + Δ; v ← v + u; v is sparsified; u and v are zeroed where sent, kept elsewhere.
BOOST_AUTO_TEST_CASE(dgc_momentum_correction_and_masking) {
  const auto fb = lc::parse_feedback("dgc:momentum=0.5");
  BOOST_TEST(fb->spec() == "dgc:momentum=0.5,warmup=0");
  const auto codec = lc::Codec::parse("topk:k=37");
  const Tensor delta = normal({300}, 41), u_old = normal({300}, 42), v_old = normal({300}, 43);
  lc::TensorState st;
  st.set("dgc_u", copy(u_old));
  st.set("dgc_v", copy(v_old));
  Tensor p;
  const Tensor d = round_trip(*fb, codec, delta, st, p);
  std::int64_t sent = 0, mismatches = 0;
  for (std::size_t i = 0; i < 300; ++i) {
    const float u1 = 0.5f * u_old.f32()[i] + delta.f32()[i];
    const float v1 = v_old.f32()[i] + u1;
    mismatches += !same_bits(p.f32()[i], v1);
    const bool s = d.f32()[i] != 0.0f;
    sent += s;
    if (s) mismatches += !same_bits(d.f32()[i], v1);
    mismatches += !same_bits(st.find("dgc_u")->f32()[i], s ? 0.0f : u1);
    mismatches += !same_bits(st.find("dgc_v")->f32()[i], s ? 0.0f : v1);
  }
  BOOST_TEST(sent == 37);
  BOOST_TEST(mismatches == 0);
  // Hand case, m = 0.5, top-1, from zeros: Δ = (1, 3): u = v = (1, 3), send (0, 3), u = v = (1, 0).
  // Then Δ = (1, 1): u = (1.5, 1), v = (2.5, 1), send (2.5, 0), u = (0, 1), v = (0, 1).
  lc::TensorState hs;
  const auto top1 = lc::Codec::parse("topk:k=1");
  Tensor hd = round_trip(*fb, top1, Tensor::from_floats({2}, std::vector<float>{1, 3}), hs, p);
  BOOST_TEST(hd.f32()[1] == 3.0f);
  BOOST_TEST(hs.find("dgc_u")->f32()[0] == 1.0f);
  BOOST_TEST(hs.find("dgc_v")->f32()[1] == 0.0f);
  hd = round_trip(*fb, top1, Tensor::from_floats({2}, std::vector<float>{1, 1}), hs, p);
  BOOST_TEST(hd.f32()[0] == 2.5f);
  BOOST_TEST(hd.f32()[1] == 0.0f);
  BOOST_TEST(hs.find("dgc_u")->f32()[0] == 0.0f);
  BOOST_TEST(hs.find("dgc_u")->f32()[1] == 1.0f);
  BOOST_TEST(hs.find("dgc_v")->f32()[1] == 1.0f);
}

// DGC warm-up: density ρ^((r+1)/(W+1)) in rounds r < W, then ρ; codec_for_round rewrites a
// density-given topk and leaves the value stage and k-given codecs alone.
BOOST_AUTO_TEST_CASE(dgc_warmup_density_schedule) {
  BOOST_TEST(lc::warmup_density(0.001, 0, 4) == std::pow(0.001, 0.2));
  BOOST_TEST(lc::warmup_density(0.001, 3, 4) == std::pow(0.001, 0.8));
  BOOST_TEST(lc::warmup_density(0.001, 4, 4) == 0.001);
  BOOST_TEST(lc::warmup_density(0.001, 0, 0) == 0.001);
  const auto fb = lc::parse_feedback("dgc:momentum=0.9,warmup=4");
  const auto codec = lc::Codec::parse("topk:density=0.001+quant:bits=4");
  const auto layout_k = [](const lc::Codec& c) {
    for (const auto& l : c.layout({100000}))
      if (l.name == "indices") return l.shape[0];
    return std::int64_t{-1};
  };
  // k = max(1, ⌊ρ·d⌋): round 0 uses 0.001^0.2 ≈ 0.2512.
  BOOST_TEST(layout_k(fb->codec_for_round(codec, 0)) ==
             static_cast<std::int64_t>(std::floor(std::pow(0.001, 0.2) * 100000)));
  BOOST_TEST(layout_k(fb->codec_for_round(codec, 4)) == 100);
  BOOST_TEST(fb->codec_for_round(codec, 4).spec() == codec.spec());
  BOOST_TEST(fb->codec_for_round(codec, 0).spec().find("+quant:bits=4") != std::string::npos);
  const auto byk = lc::Codec::parse("topk:k=10");
  BOOST_TEST(fb->codec_for_round(byk, 0).spec() == byk.spec());
}

// Over T rounds of EF14 with top-k, Σ Δ_t − Σ D_t equals the final residual exactly. The deltas are
// multiples of 2⁻⁴ below 2⁸, so every float32 sum here is exact and the identity is bit-exact.
BOOST_AUTO_TEST_CASE(ef14_topk_telescopes_over_rounds) {
  const auto fb = lc::parse_feedback("ef14");
  const auto codec = lc::Codec::parse("topk:density=0.05");
  constexpr int d = 400, T = 25;
  std::vector<double> sum_in(d, 0.0), sum_out(d, 0.0);
  lc::TensorState st;
  for (int t = 0; t < T; ++t) {
    Tensor delta({d});
    Tensor u({d});
    loco::fill_uniform(u.f32(), -1.0f, 1.0f, 100 + t, 1);
    for (int i = 0; i < d; ++i) delta.f32()[i] = std::round(u.f32()[i] * 64.0f) / 16.0f;
    Tensor p;
    const Tensor out = round_trip(*fb, codec, delta, st, p, t);
    for (int i = 0; i < d; ++i) {
      sum_in[i] += delta.f32()[i];
      sum_out[i] += out.f32()[i];
    }
  }
  std::int64_t mismatches = 0;
  for (int i = 0; i < d; ++i) mismatches += sum_in[i] - sum_out[i] != double(st.find("residual")->f32()[i]);
  BOOST_TEST(mismatches == 0);
}

BOOST_AUTO_TEST_CASE(parse_and_shape_errors) {
  for (const char* bad : {"ef15", "ef14:beta=1", "sparseloco:beta=0", "sparseloco:beta=1.5", "sparseloco:gamma=1",
                          "dgc:momentum=1", "dgc:warmup=-1", "dgc:momentum=x", "ef14+ef21", ""})
    BOOST_TEST_CONTEXT(bad) {
      BOOST_TEST(throws_kind([&] { lc::parse_feedback(bad); }, ErrorKind::Usage));
    }
  const auto fb = lc::parse_feedback("ef14");
  lc::TensorState st;
  st.set("residual", Tensor({5}));
  BOOST_TEST(throws_kind([&] { fb->input(Tensor({6}), st, "x"); }, ErrorKind::BadInput));
}

// compress_file with --ef-state: the state carries over two rounds and is refused for another
// worker, model or kind.
BOOST_AUTO_TEST_CASE(state_file_across_rounds) {
  TempDir dir;
  const auto write = [&](const std::string& name, std::int64_t round, std::int64_t worker, const char* config,
                         std::uint64_t seed) {
    loco::TensorSet s;
    s.add("w", normal({20, 10}, seed));
    s.add("b", normal({10}, seed + 1));
    Attributes root;
    root.set("kind", std::string("delta"));
    root.set("round", round);
    root.set("worker", worker);
    root.set("model_config", std::string(config));
    loco::io::write_tensor_set(dir / name, root, s);
  };
  const char* cfg = R"({"arch":"mlp","width":10})";
  write("d1.h5", 4, 2, cfg, 1);
  write("d2.h5", 5, 2, cfg, 3);
  const auto fb = lc::parse_feedback("ef14");
  const auto codec = lc::Codec::parse("topk:density=0.1");
  lc::compress_file(dir / "d1.h5", dir / "c1.h5", codec, 0, "", fb.get(), dir / "s.h5");
  fs::copy_file(dir / "s.h5", dir / "s1.h5");
  lc::compress_file(dir / "d2.h5", dir / "c2.h5", codec, 0, "", fb.get(), dir / "s.h5");

  auto d1 = loco::io::open_source(dir / "d1.h5");
  auto d2 = loco::io::open_source(dir / "d2.h5");
  auto c1 = loco::io::open_source(dir / "c1.h5");
  auto c2 = loco::io::open_source(dir / "c2.h5");
  auto s1 = loco::io::open_source(dir / "s1.h5");
  auto s2 = loco::io::open_source(dir / "s.h5");
  BOOST_TEST(s2->attributes().get_string("kind").value() == "state");
  BOOST_TEST(s2->attributes().get_int("worker").value() == 2);
  BOOST_TEST(s2->attributes().get_int("round").value() == 6);
  BOOST_TEST(s2->attributes().get_string("feedback").value() == "ef14");
  BOOST_TEST(loco::io::model_config(*s2) == loco::io::model_config(*d1));
  BOOST_TEST(c2->attributes().get_string("feedback").value() == "ef14");
  const auto read = [](const loco::io::TensorSource& s, const std::string& group, const std::string& name) {
    for (const auto* t : s.group(group))
      if (t->name == name) return s.read(*t, loco::DType::F32);
    BOOST_FAIL("no " + group + "/" + name);
    return Tensor();
  };
  std::int64_t mismatches = 0;
  for (const std::string name : {"w", "b"}) {
    const Tensor x1 = read(*d1, "tensors", name), x2 = read(*d2, "tensors", name);
    const Tensor o1 = lc::decode(lc::read_encoded(*c1, name)), o2 = lc::decode(lc::read_encoded(*c2, name));
    const Tensor e1 = read(*s1, "state/residual", name), e2 = read(*s2, "state/residual", name);
    for (std::size_t i = 0; i < x1.f32().size(); ++i) {
      mismatches += !same_bits(e1.f32()[i], x1.f32()[i] - o1.f32()[i]);
      const float p2 = e1.f32()[i] + x2.f32()[i];
      mismatches += !same_bits(e2.f32()[i], p2 - o2.f32()[i]);
      mismatches += !(o2.f32()[i] == 0.0f || same_bits(o2.f32()[i], p2));
    }
  }
  BOOST_TEST(mismatches == 0);

  write("other_worker.h5", 6, 3, cfg, 5);
  write("other_model.h5", 6, 2, R"({"arch":"mlp","width":12})", 5);
  BOOST_TEST(throws_kind(
      [&] { lc::compress_file(dir / "other_worker.h5", dir / "x.h5", codec, 0, "", fb.get(), dir / "s.h5"); },
      ErrorKind::BadInput));
  BOOST_TEST(throws_kind(
      [&] { lc::compress_file(dir / "other_model.h5", dir / "x.h5", codec, 0, "", fb.get(), dir / "s.h5"); },
      ErrorKind::BadInput));
  const auto ef21 = lc::parse_feedback("ef21");
  BOOST_TEST(
      throws_kind([&] { lc::compress_file(dir / "d2.h5", dir / "x.h5", codec, 0, "", ef21.get(), dir / "s.h5"); },
                  ErrorKind::BadInput));
  BOOST_TEST(throws_kind([&] { lc::compress_file(dir / "d2.h5", dir / "x.h5", codec, 0, "", fb.get(), ""); },
                         ErrorKind::Usage));
  BOOST_TEST(throws_kind([&] { lc::compress_file(dir / "d2.h5", dir / "x.h5", codec, 0, "", nullptr, dir / "s.h5"); },
                         ErrorKind::Usage));
  BOOST_TEST(throws_kind([&] { lc::compress_file(dir / "d2.h5", dir / "x.h5", codec, 0, "", fb.get(), dir / "x.h5"); },
                         ErrorKind::Usage));
}

BOOST_AUTO_TEST_SUITE_END()
