// Attacks: ALIE's z from n and f, hand-computed attack vectors, delta files written from honest
// deltas (values, attributes, nothing left on error), and shard label flipping.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>

#include "loco/core/attributes.hpp"
#include "loco/core/tensor.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"
#include "loco/robust/attack.hpp"
#include "support.hpp"

using namespace loco;
using namespace loco::robust;

BOOST_AUTO_TEST_SUITE(attack)

BOOST_AUTO_TEST_CASE(alie_z_formula) {
  BOOST_TEST(std::abs(normal_quantile(0.975) - 1.959963984540054) < 1e-12);
  BOOST_TEST(normal_quantile(0.5) == 0.0);
  // Baruch et al., Algorithm 3: s = ⌊n/2 + 1⌋ − f, z = Φ⁻¹((n − s)/n). Reference quantiles from
  // Python's statistics.NormalDist().inv_cdf (accurate to ~1e-16); the bisection stops at adjacent
  // doubles, so 1e-12 is loose.
  // n = 10, f = 2: s = 6 − 2 = 4, Φ⁻¹(6/10) = 0.2533471031357997 (epfml's (n−f−s)/(n−f) = 1/2 gives 0).
  BOOST_TEST(std::abs(alie_z(10, 2) - 0.2533471031357997) < 1e-12);
  // n = 25, f = 5: s = 13 − 5 = 8, Φ⁻¹(17/25) = Φ⁻¹(0.68) = 0.4676987991145082.
  BOOST_TEST(std::abs(alie_z(25, 5) - 0.4676987991145082) < 1e-12);
  // n = 50, f = 12 (24%): s = 26 − 12 = 14, Φ⁻¹(36/50) = Φ⁻¹(0.72) = 0.5828415072712162.
  BOOST_TEST(std::abs(alie_z(50, 12) - 0.5828415072712162) < 1e-12);
  // n = 10, f = 5: s = 1, Φ⁻¹(0.9) = 1.2815515655446004.
  BOOST_TEST(std::abs(alie_z(10, 5) - 1.2815515655446004) < 1e-12);
  // n even, f = 1: s = n/2, Φ⁻¹(1/2) = 0 exactly; odd n: s = (n − 1)/2, Φ⁻¹(6/11) > 0.
  BOOST_TEST(alie_z(10, 1) == 0.0);
  BOOST_TEST(std::abs(alie_z(11, 1) - normal_quantile(6.0 / 11.0)) < 1e-15);
  // n = 10, f = 6: s = 0, z_max unbounded → an explicit z is needed.
  test::require_error([] { alie_z(10, 6); }, ErrorKind::Usage, {"unbounded", "give z="});
}

BOOST_AUTO_TEST_CASE(alie_refuses_z_zero) {
  const std::vector<std::vector<float>> h = {{1, 2}, {3, 6}};
  // n = 4, f = 1: s = 2 = n/2 → z = 0: the honest mean, refused; likewise an explicit z=0.
  test::require_error([&] { attack_vector(parse_attack_spec("alie"), h, 4, 1); }, ErrorKind::Usage,
                      {"honest mean", "n = 4, f = 1"});
  test::require_error([&] { attack_vector(parse_attack_spec("alie:z=0"), h, 4, 1); }, ErrorKind::Usage,
                      {"honest mean", "non-zero z="});
  // n = 3, f = 1: s = 1, z = Φ⁻¹(2/3) = 0.4307272992954576; mean (2, 4), population sd (1, 2).
  const double z = 0.4307272992954576;
  const auto v = attack_vector(parse_attack_spec("alie"), h, 3, 1);
  BOOST_TEST(std::abs(v[0] - (2 - z)) < 1e-6);
  BOOST_TEST(std::abs(v[1] - (4 - 2 * z)) < 1e-6);
}

BOOST_AUTO_TEST_CASE(attack_vectors_by_hand) {
  const std::vector<std::vector<float>> h = {{1, 2}, {3, 6}};  // mean (2, 4), population sd (1, 2)
  BOOST_TEST((attack_vector(parse_attack_spec("sign-flip"), h, 3, 1) == std::vector<float>{-2, -4}));
  BOOST_TEST((attack_vector(parse_attack_spec("scaled:s=3"), h, 3, 1) == std::vector<float>{6, 12}));
  BOOST_TEST((attack_vector(parse_attack_spec("ipm:eps=0.5"), h, 3, 1) == std::vector<float>{-1, -2}));
  BOOST_TEST((attack_vector(parse_attack_spec("alie:z=1"), h, 3, 1) == std::vector<float>{1, 2}));
  BOOST_TEST(format_attack_spec(parse_attack_spec("ipm")) == "ipm:eps=0.1");
  // Gaussian: N(0, σ²), a different draw per worker, the same for the same (seed, worker).
  const std::vector<std::vector<float>> z(1, std::vector<float>(100000, 5.0f));
  const auto g = attack_vector(parse_attack_spec("gaussian:sigma=2"), z, 2, 1, 9, 4);
  double s = 0, s2 = 0;
  for (float v : g) s += v, s2 += double(v) * v;
  BOOST_TEST(std::abs(s / 1e5) < 5 * 2 / std::sqrt(1e5));
  BOOST_TEST(std::abs(std::sqrt(s2 / 1e5) - 2) < 5 * 2 / std::sqrt(2e5));
  BOOST_TEST((g == attack_vector(parse_attack_spec("gaussian:sigma=2"), z, 2, 1, 9, 4)));
  BOOST_TEST((g != attack_vector(parse_attack_spec("gaussian:sigma=2"), z, 2, 1, 9, 5)));
  test::require_error([] { parse_attack_spec("scaled"); }, ErrorKind::Usage, {"needs s="});
  test::require_error([] { parse_attack_spec("lie"); }, ErrorKind::Usage, {"unknown attack 'lie'"});
  test::require_error([] { parse_attack_spec("ipm:e=1"); }, ErrorKind::Usage, {"unknown parameter 'e'"});
}

namespace {
void write_delta(const std::string& path, std::vector<float> w, std::int64_t worker, std::int64_t samples,
                 const std::string& base = "xxh64:00") {
  TensorSet t;
  t.add("w", Tensor::from_floats({2, 2}, w));
  Attributes a;
  a.set("kind", std::string("delta"));
  a.set("worker", worker);
  a.set("samples", samples);
  a.set("round", std::int64_t{3});
  a.set("base_checksum", base);
  a.set("loss_mean", 1.0 + static_cast<double>(worker));
  io::write_tensor_set(path, a, t);
}
}  // namespace

BOOST_AUTO_TEST_CASE(attack_files) {
  test::TempDir dir("attack");
  write_delta(dir / "h0.h5", {1, 2, 3, 4}, 0, 10);
  write_delta(dir / "h1.h5", {3, 2, 1, 0}, 1, 21);
  AttackOptions o;
  o.spec = parse_attack_spec("alie:z=2");
  const auto rep = write_attack({dir / "h0.h5", dir / "h1.h5"}, {dir / "a.h5", dir / "b.h5"}, o);
  BOOST_TEST(rep.n == 4);
  BOOST_TEST(rep.f == 2);
  BOOST_TEST((rep.workers == std::vector<std::int64_t>{2, 3}));
  auto a = io::open_source(dir / "b.h5");
  const Tensor w = a->read(a->get("w"));
  // mean (2, 2, 2, 2), sd (1, 0, 1, 2) → 2 − 2·sd.
  BOOST_TEST((std::vector<float>(w.f32().begin(), w.f32().end()) == std::vector<float>{0, 2, 0, -2}));
  BOOST_TEST(a->attributes().get_int("worker").value() == 3);
  BOOST_TEST(a->attributes().get_int("samples").value() == 16);  // round(15.5)
  BOOST_TEST(a->attributes().get_int("round").value() == 3);
  BOOST_TEST(a->attributes().get_double("loss_mean").value() == 1.5);
  BOOST_TEST(a->attributes().get_string("attack").value() == "alie:z=2");
  BOOST_TEST(a->attributes().get_double("attack_z").value() == 2.0);
  BOOST_TEST(a->attributes().get_string("kind").value() == "delta");
  // Deltas of another base are refused and nothing is written.
  write_delta(dir / "h2.h5", {0, 0, 0, 0}, 2, 5, "xxh64:11");
  test::require_error(
      [&] {
        write_attack({dir / "h0.h5", dir / "h2.h5"}, {dir / "c.h5"}, o);
      },
      ErrorKind::BadInput, {"h2.h5", "base_checksum"});
  BOOST_TEST(!std::filesystem::exists(dir / "c.h5"));
}

BOOST_AUTO_TEST_CASE(label_flip_shard) {
  test::TempDir dir("flip");
  std::vector<io::TensorInfo> plan(2);
  plan[0].group = "data", plan[0].name = "x", plan[0].shape = {4, 3}, plan[0].dtype = DType::F32;
  plan[1].group = "data", plan[1].name = "y", plan[1].shape = {4}, plan[1].dtype = DType::I32;
  Attributes root;
  root.set("kind", std::string("data"));
  root.set("classes", std::int64_t{10});
  {
    auto sink = io::create_sink(dir / "s.h5", root, plan);
    std::vector<float> x(12);
    for (int i = 0; i < 12; ++i) x[i] = static_cast<float>(i);
    sink->write(0, Tensor::from_floats({4, 3}, x));
    Tensor y({4}, DType::I32);
    const std::int32_t labels[4] = {0, 3, 9, 5};
    std::copy(labels, labels + 4, y.as<std::int32_t>().begin());
    sink->write(1, y);
    sink->commit();
  }
  const auto rep = label_flip(dir / "s.h5", dir / "f.h5");
  BOOST_TEST(rep.examples == 4);
  auto f = io::open_source(dir / "f.h5");
  const Tensor y = f->read(f->get("y", "data"));
  BOOST_TEST((std::vector<std::int32_t>(y.as<std::int32_t>().begin(), y.as<std::int32_t>().end()) ==
              std::vector<std::int32_t>{9, 6, 0, 4}));
  const Tensor x = f->read(f->get("x", "data"));
  BOOST_TEST(x.f32()[11] == 11.0f);
  BOOST_TEST(f->attributes().get_string("attack").value() == "label-flip");
  // A delta is no shard.
  write_delta(dir / "d.h5", {1, 2, 3, 4}, 0, 1);
  test::require_error([&] { label_flip(dir / "d.h5", dir / "g.h5"); }, ErrorKind::BadInput, {"d.h5"});
  BOOST_TEST(!std::filesystem::exists(dir / "g.h5"));
}

BOOST_AUTO_TEST_SUITE_END()
