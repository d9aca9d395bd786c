// EF21 at the aggregator: deltas compressed with ef21 (and econtrol) feedback aggregated with
// --ef21-state over two rounds; the aggregator's estimates equal the workers' own bit for bit, the step
// uses them as the deltas, a worker that did not report keeps its estimate, a rerun of a round gives
// the same result, and without the state folder such deltas are refused.
#include <boost/test/unit_test.hpp>

#include "fixtures.hpp"
#include "support.hpp"

#include <filesystem>

#include "loco/compress/codec.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/core/error.hpp"

using namespace loco;
using namespace loco::aggtest;
using loco::test::TempDir;
namespace fs = std::filesystem;

namespace {

// Worker k's delta of round r on the model at `model`, compressed with feedback into c-<k>-<r>.h5.
std::string compressed_delta(const TempDir& dir, const std::string& model, int k, int r, const std::string& fb_spec) {
  const std::string dense = dir / fmt::format("d-{}-{}.h5", k, r), out = dir / fmt::format("c-{}-{}.h5", k, r);
  write_delta(dense, random_values(static_cast<std::uint32_t>(100 * r + k), 0.3f), checksum_of(model), k, r);
  const auto fb = compress::parse_feedback(fb_spec);
  io::forget_inputs();
  compress::compress_file(dense, out, compress::Codec::parse("topk:k=4"), 7, "", fb.get(),
                          dir / fmt::format("worker-{}-ef.h5", k));
  return out;
}

Values worker_estimate(const TempDir& dir, int k, const std::string& slot) {
  return read_group(dir / fmt::format("worker-{}-ef.h5", k), "state/" + slot);
}

void check_step(const Values& before, const Values& after, const std::vector<Values>& g) {
  for (const auto& [name, x] : before)
    for (std::size_t j = 0; j < x.size(); ++j) {
      double mean = 0;
      for (const auto& gi : g) mean += gi.at(name)[j];
      mean /= static_cast<double>(g.size());
      BOOST_TEST(std::abs(after.at(name)[j] - (x[j] - mean)) < 1e-6);
    }
}

void two_rounds(const std::string& fb, const std::string& slot) {
  TempDir dir("aggregate-ef21");
  const std::string state = dir / "ef21";
  write_model(dir / "g0.h5", random_values(1));
  auto o = options("mean");
  o.ef21_state = state;
  // Round 0: both workers report; g_i = decode(c_i).
  const std::vector<std::string> r0 = {compressed_delta(dir, dir / "g0.h5", 0, 0, fb),
                                       compressed_delta(dir, dir / "g0.h5", 1, 0, fb)};
  run(dir / "g0.h5", r0, dir / "g1.h5", o);
  for (int k = 0; k < 2; ++k)
    BOOST_TEST(
        same_bits(read_group(state + fmt::format("/worker-{}-round-000000.h5", k)), worker_estimate(dir, k, slot)));
  check_step(read_group(dir / "g0.h5"), read_group(dir / "g1.h5"),
             {worker_estimate(dir, 0, slot), worker_estimate(dir, 1, slot)});
  // Round 1: only worker 0 reports; its g₀ ← g₀ + decode(c₀) is its delta, worker 1 keeps its estimate.
  const std::vector<std::string> r1 = {compressed_delta(dir, dir / "g1.h5", 0, 1, fb)};
  run(dir / "g1.h5", r1, dir / "g2.h5", o);
  BOOST_TEST(same_bits(read_group(state + "/worker-0-round-000001.h5"), worker_estimate(dir, 0, slot)));
  BOOST_TEST(fs::exists(state + "/worker-0-round-000000.h5"));  // the base of round 1, kept for a rerun
  BOOST_TEST(fs::exists(state + "/worker-1-round-000000.h5"));
  const Values g2 = read_group(dir / "g2.h5");
  check_step(read_group(dir / "g1.h5"), g2, {worker_estimate(dir, 0, slot)});
  // A rerun of round 1 starts from the same base and gives the same bits.
  run(dir / "g1.h5", r1, dir / "g2-again.h5", o);
  BOOST_TEST(same_bits(g2, read_group(dir / "g2-again.h5")));
  BOOST_TEST(same_bits(read_group(state + "/worker-0-round-000001.h5"), worker_estimate(dir, 0, slot)));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(aggregate_ef21)

BOOST_AUTO_TEST_CASE(ef21_estimates_over_two_rounds) { two_rounds("ef21", "ef21_g"); }

BOOST_AUTO_TEST_CASE(econtrol_estimates_over_two_rounds) { two_rounds("econtrol:eta=0.2", "econtrol_h"); }

BOOST_AUTO_TEST_CASE(ef21_deltas_need_the_state_folder) {
  TempDir dir("aggregate-ef21");
  write_model(dir / "g0.h5", random_values(1));
  const std::string c = compressed_delta(dir, dir / "g0.h5", 0, 0, "ef21");
  test::require_error([&] { run(dir / "g0.h5", {c}, dir / "g1.h5", options("mean")); }, ErrorKind::BadInput,
                      {"c-0-0.h5", "ef21", "--ef21-state"});
  BOOST_TEST(!fs::exists(dir / "g1.h5"));
}

BOOST_AUTO_TEST_SUITE_END()
