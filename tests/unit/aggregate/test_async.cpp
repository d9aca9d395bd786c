// The asynchronous loop (loco::aggregate::watch) and the staleness rules: hand-computed weights for
// constant, polynomial, hinge and fedfix; FedAsync over two arrivals by hand; every file applied exactly
// once across a stop, a simulated crash (a stray next-version file) and restarts, with the same bits as
// one uninterrupted run; FedBuff with K = 2 equal to the synchronous mean of the pair whatever the
// arrival order; delayed Nesterov by hand; a foreign delta rejected; FedFix's (1 + s) weight.
#include <boost/test/unit_test.hpp>

#include "fixtures.hpp"
#include "support.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "loco/aggregate/watch.hpp"
#include "loco/core/error.hpp"

using namespace loco;
using namespace loco::aggtest;
using loco::test::TempDir;
namespace fs = std::filesystem;
namespace agg = loco::aggregate;

namespace {

struct Folder {
  TempDir dir{"aggregate-watch"};
  std::string inbox = dir / "inbox";
  std::string model = dir / "g0.h5";
  Values theta = random_values(1);
  std::string base;
  std::map<std::string, Values> deltas;
  int clock = 0;

  Folder() {
    fs::create_directories(inbox);
    write_model(model, theta);
    base = checksum_of(model);
  }
  // Writes inbox/name (worker w, from round r's model with checksum b), arriving after the previous ones.
  void arrive(const std::string& name, std::int64_t worker, std::uint32_t seed, std::int64_t round = 0,
              std::string b = "") {
    const Values v = random_values(seed, 0.1f);
    deltas[name] = v;
    const std::string path = (fs::path(inbox) / name).string();
    write_delta(path, v, b.empty() ? base : b, worker, round);
    fs::last_write_time(path, fs::file_time_type::clock::now() - std::chrono::hours(1) + std::chrono::seconds(++clock));
  }
  agg::WatchOptions options(const std::string& out, const std::string& outer, std::int64_t buffer,
                            std::int64_t max_updates, const std::string& staleness = "constant") const {
    agg::WatchOptions w;
    w.dir = inbox;
    w.model = model;
    w.outdir = dir / out;
    w.aggregate.outer = optim::parse_outer_spec(outer);
    w.aggregate.staleness = agg::parse_staleness(staleness);
    w.buffer = buffer;
    w.max_updates = max_updates;
    w.poll_seconds = 0.01;
    return w;
  }
};

nlohmann::json ledger(const std::string& outdir) {
  std::ifstream f(fs::path(outdir) / "ledger.json");
  return nlohmann::json::parse(f);
}

agg::WatchReport run_watch(const agg::WatchOptions& w) {
  io::forget_inputs();
  return agg::watch(w);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(aggregate_async)

BOOST_AUTO_TEST_CASE(staleness_weights_by_hand) {
  using agg::parse_staleness, agg::staleness_gain;
  BOOST_TEST(staleness_gain(parse_staleness("constant"), 7) == 1.0);
  BOOST_TEST(staleness_gain(parse_staleness("polynomial"), 3) == 0.5);  // (1 + 3)^−0.5
  BOOST_TEST(std::abs(staleness_gain(parse_staleness("polynomial:a=2"), 1) - 0.25) < 1e-15);
  BOOST_TEST(staleness_gain(parse_staleness("hinge"), 4) == 1.0);                             // s ≤ b = 4
  BOOST_TEST(std::abs(staleness_gain(parse_staleness("hinge"), 6) - 1.0 / 21.0) < 1e-15);     // 1/(10·2 + 1)
  BOOST_TEST(std::abs(staleness_gain(parse_staleness("hinge:a=0.5,b=1"), 3) - 0.5) < 1e-15);  // 1/(0.5·2 + 1)
  BOOST_TEST(staleness_gain(parse_staleness("fedfix"), 2) == 3.0);                            // ⌈τ/Δt⌉ = 1 + s
  BOOST_TEST(agg::format_staleness(parse_staleness("hinge")) == "hinge:a=10,b=4");
  test::require_error([] { parse_staleness("hinge:c=1"); }, ErrorKind::Usage, {"unknown parameter 'c'"});
  test::require_error([] { parse_staleness("linear"); }, ErrorKind::Usage, {"'linear'"});
}

BOOST_AUTO_TEST_CASE(fedasync_two_arrivals_by_hand) {
  Folder f;
  f.arrive("a.h5", 0, 10);
  f.arrive("b.h5", 1, 11);  // also from round 0: staleness 1 when applied after a.h5
  auto w = f.options("out", "sgd:lr=0.9", 1, 2, "polynomial:a=0.5");
  const auto r = run_watch(w);
  BOOST_TEST(r.updates == 2);
  BOOST_TEST(r.round == 2);
  const Values got = read_group(f.dir / "out/model-000002.h5");
  for (const auto& [name, x] : f.theta)
    for (std::size_t j = 0; j < x.size(); ++j) {
      const double want =
          x[j] - 0.9 * f.deltas["a.h5"].at(name)[j] - 0.9 / std::sqrt(2.0) * f.deltas["b.h5"].at(name)[j];
      BOOST_TEST(std::abs(got.at(name)[j] - want) < 1e-6);
    }
  const auto l = ledger(w.outdir);
  BOOST_TEST(l["applied"].size() == 2u);
  BOOST_TEST(l["applied"][0]["file"] == "a.h5");
  BOOST_TEST(l["applied"][0]["staleness"] == 0);
  BOOST_TEST(l["applied"][1]["file"] == "b.h5");
  BOOST_TEST(l["applied"][1]["staleness"] == 1);
  std::ifstream latest(fs::path(w.outdir) / "latest");
  std::string name;
  latest >> name;
  BOOST_TEST(name == "model-000002.h5");
  BOOST_TEST(fs::read_symlink(fs::path(w.outdir) / "latest.h5").string() == "model-000002.h5");
  BOOST_TEST(fs::exists(fs::path(w.outdir) / "model-000000.h5"));  // the initial model, version 0
}

BOOST_AUTO_TEST_CASE(each_file_is_applied_once_across_restarts) {
  Folder f;
  for (int k = 0; k < 3; ++k) f.arrive("d" + std::to_string(k) + ".h5", k, 20 + static_cast<std::uint32_t>(k));
  // The reference: one run of three updates.
  run_watch(f.options("ref", "nesterov", 1, 3));
  // Stop after one update; a crash then leaves a stray model-000002.h5 that the ledger does not know.
  auto w = f.options("out", "nesterov", 1, 1);
  BOOST_TEST(run_watch(w).updates == 1);
  BOOST_TEST(ledger(w.outdir)["pending"].size() == 2u);  // seen, recorded, not yet applied
  fs::copy_file(fs::path(w.outdir) / "model-000001.h5", fs::path(w.outdir) / "model-000002.h5");
  w.max_updates = 3;
  BOOST_TEST(run_watch(w).updates == 2);
  BOOST_TEST(run_watch(w).updates == 0);  // a rerun of a finished run is a no-op
  const auto l = ledger(w.outdir);
  std::vector<std::string> files;
  for (const auto& e : l["applied"]) files.push_back(e["file"]);
  BOOST_TEST((files == std::vector<std::string>{"d0.h5", "d1.h5", "d2.h5"}));
  for (const std::string v : {"model-000001.h5", "model-000002.h5", "model-000003.h5"}) {
    BOOST_TEST_INFO(v);
    BOOST_TEST(same_bits(read_group(f.dir / ("ref/" + v)), read_group(f.dir / ("out/" + v))));
    BOOST_TEST(same_bits(read_group(f.dir / ("ref/" + v), "state/momentum"),
                         read_group(f.dir / ("out/" + v), "state/momentum")));
  }
  // A file arriving later is the only one applied by the next run.
  f.arrive("d3.h5", 3, 23, 3, checksum_of(f.dir / "out/model-000003.h5"));
  w.max_updates = 4;
  BOOST_TEST(run_watch(w).updates == 1);
  BOOST_TEST(ledger(w.outdir)["applied"].size() == 4u);
  BOOST_TEST(ledger(w.outdir)["applied"][3]["staleness"] == 0);
}

BOOST_AUTO_TEST_CASE(fedbuff_pair_equals_the_synchronous_mean_in_any_arrival_order) {
  Folder f;
  f.arrive("late-worker1.h5", 1, 31);
  f.arrive("early-worker0.h5", 0, 30);
  run_watch(f.options("buf", "nesterov", 2, 1));
  io::forget_inputs();
  agg::AggregateOptions o;
  o.outer = optim::parse_outer_spec("nesterov");
  run(f.model, {(fs::path(f.inbox) / "early-worker0.h5").string(), (fs::path(f.inbox) / "late-worker1.h5").string()},
      f.dir / "sync.h5", o);
  BOOST_TEST(same_bits(read_group(f.dir / "buf/model-000001.h5"), read_group(f.dir / "sync.h5")));
  BOOST_TEST(same_bits(read_group(f.dir / "buf/model-000001.h5", "state/momentum"),
                       read_group(f.dir / "sync.h5", "state/momentum")));
}

BOOST_AUTO_TEST_CASE(delayed_nesterov_by_hand) {
  Folder f;
  f.arrive("a.h5", 0, 40);
  f.arrive("b.h5", 1, 41);
  // ε = 0.5, β = 0.9, N = 2: θ₁ = θ₀ − εΔa/2; θ₂ = θ₁ − εΔb/2 − εβ·m with m = (Δa + Δb)/2.
  run_watch(f.options("dn", "delayed_nesterov:lr=0.5,momentum=0.9,period=2", 1, 2));
  const Values g1 = read_group(f.dir / "dn/model-000001.h5"), g2 = read_group(f.dir / "dn/model-000002.h5");
  const Values m2 = read_group(f.dir / "dn/model-000002.h5", "state/momentum");
  for (const auto& [name, x] : f.theta)
    for (std::size_t j = 0; j < x.size(); ++j) {
      const double a = f.deltas["a.h5"].at(name)[j], b = f.deltas["b.h5"].at(name)[j];
      BOOST_TEST(std::abs(g1.at(name)[j] - (x[j] - 0.25 * a)) < 1e-6);
      const double m = (a + b) / 2;
      BOOST_TEST(std::abs(m2.at(name)[j] - m) < 1e-6);
      BOOST_TEST(std::abs(g2.at(name)[j] - (x[j] - 0.25 * a - 0.25 * b - 0.45 * m)) < 1e-6);
    }
}

BOOST_AUTO_TEST_CASE(a_foreign_delta_is_rejected_and_never_applied) {
  Folder f;
  f.arrive("good.h5", 0, 50);
  f.arrive("foreign.h5", 1, 51, 0, "xxh64:0123456789abcdef");
  std::ofstream(f.dir / "STOP").put('\n');
  auto w = f.options("out", "sgd", 1, 0);
  w.until_file = f.dir / "STOP";
  const auto r = run_watch(w);
  BOOST_TEST(r.updates == 1);
  BOOST_TEST(r.rejected == 1);
  const auto l = ledger(w.outdir);
  BOOST_TEST(l["rejected"][0]["file"] == "foreign.h5");
  BOOST_TEST(l["rejected"][0]["reason"].get<std::string>().find("not a model version of this run") !=
             std::string::npos);
  BOOST_TEST(run_watch(w).updates == 0);  // not retried
}

BOOST_AUTO_TEST_CASE(fedfix_weights_a_late_delta_by_its_periods) {
  Folder f;
  f.arrive("a.h5", 0, 60);
  f.arrive("b.h5", 1, 61);
  auto w = f.options("fix", "sgd", 1, 1, "fedfix");
  w.period_seconds = 0.02;
  run_watch(w);             // one period: a and b together, both fresh: Δ̄ = (a + b)/2
  f.arrive("c.h5", 2, 62);  // from round 0, applied to version 1: one period late, weight 1 + 1 = 2
  w.max_updates = 2;
  run_watch(w);
  const Values g2 = read_group(f.dir / "fix/model-000002.h5");
  for (const auto& [name, x] : f.theta)
    for (std::size_t j = 0; j < x.size(); ++j) {
      const double a = f.deltas["a.h5"].at(name)[j], b = f.deltas["b.h5"].at(name)[j], c = f.deltas["c.h5"].at(name)[j];
      BOOST_TEST(std::abs(g2.at(name)[j] - (x[j] - (a + b) / 2 - 2 * c)) < 1e-6);
    }
}

BOOST_AUTO_TEST_CASE(watch_refusals) {
  Folder f;
  auto w = f.options("out", "sgd", 1, 0);
  test::require_error([&] { run_watch(w); }, ErrorKind::Usage, {"--max-updates", "--until"});
  w.max_updates = 1;
  w.dir = f.dir / "nothere";
  test::require_error([&] { run_watch(w); }, ErrorKind::Usage, {"not a folder"});
  // A ledger started from another model.
  w = f.options("out", "sgd", 1, 1);
  f.arrive("a.h5", 0, 70);
  run_watch(w);
  write_model(f.dir / "other.h5", random_values(99));
  w.model = f.dir / "other.h5";
  test::require_error([&] { run_watch(w); }, ErrorKind::BadInput, {"ledger started from another model"});
}

BOOST_AUTO_TEST_SUITE_END()
