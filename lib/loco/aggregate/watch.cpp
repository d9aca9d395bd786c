// The asynchronous aggregation loop over a watched folder, with its ledger (see watch.hpp).
#include "loco/aggregate/watch.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "loco/core/error.hpp"
#include "loco/core/json.hpp"
#include "loco/core/log.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/output.hpp"
#include "loco/io/source.hpp"

namespace loco::aggregate {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr std::string_view kLedgerFormat = "loco-aggregate-ledger/1";

std::string model_name(std::int64_t round) { return fmt::format("model-{:06d}.h5", round); }

// Writes text to path atomically (temporary file, fsync, rename).
void write_atomic(const std::string& path, const std::string& text) {
  io::AtomicOutput out(path);
  {
    std::ofstream f(out.temp_path(), std::ios::binary);
    f << text;
    if (!f.flush()) throw_error(ErrorKind::Io, "{}: cannot write", out.temp_path());
  }
  out.commit();
}

std::string checksum_of(const std::string& path) {
  const auto src = io::open_source(path);
  return io::tensors_checksum(*src);
}

class Watcher {
 public:
  Watcher(const WatchOptions& o, std::ostream* log) : o_(o), log_(log) {
    if (o.buffer < 1) throw_error(ErrorKind::Usage, "--buffer {} is not ≥ 1", o.buffer);
    if (o.max_updates < 0) throw_error(ErrorKind::Usage, "--max-updates {} is negative", o.max_updates);
    if (!(o.poll_seconds > 0) || !(o.period_seconds >= 0))
      throw_error(ErrorKind::Usage, "poll interval {} s must be > 0 and period {} s ≥ 0", o.poll_seconds,
                  o.period_seconds);
    if (o.max_updates == 0 && o.until_file.empty())
      throw_error(ErrorKind::Usage, "--watch needs --max-updates U or --until FILE to know when to stop");
    if (o.outdir.empty() || o.outdir == "-")
      throw_error(ErrorKind::Usage, "--watch writes model versions into a folder: give -o OUTDIR, not '{}'", o.outdir);
    std::error_code ec;
    if (!fs::is_directory(o.dir, ec)) throw_error(ErrorKind::Usage, "--watch {}: not a folder", o.dir);
    fs::create_directories(o.outdir, ec);
    if (!fs::is_directory(o.outdir, ec)) throw_error(ErrorKind::Io, "{}: cannot create the output folder", o.outdir);
    if (fs::equivalent(o.dir, o.outdir, ec))
      throw_error(ErrorKind::Usage, "the watched folder and the output folder are both {}", o.dir);
    ledger_path_ = (fs::path(o.outdir) / "ledger.json").string();
    open_ledger();
  }

  WatchReport run() {
    auto last_period = std::chrono::steady_clock::now();
    for (;;) {
      if (done()) break;
      scan();
      if (o_.period_seconds > 0) {
        const auto now = std::chrono::steady_clock::now();
        if (std::chrono::duration<double>(now - last_period).count() >= o_.period_seconds) {
          last_period = now;
          if (!pending().empty()) update(pending().size());
        }
      } else {
        while (!done() && pending().size() >= static_cast<std::size_t>(o_.buffer))
          update(static_cast<std::size_t>(o_.buffer));
      }
      if (done()) break;
      if (!o_.until_file.empty() && fs::exists(o_.until_file)) break;
      std::this_thread::sleep_for(std::chrono::duration<double>(o_.poll_seconds));
    }
    WatchReport r;
    r.updates = updates_;
    r.total_updates = ledger_["updates"].get<std::int64_t>();
    r.applied = static_cast<std::int64_t>(ledger_["applied"].size());
    r.rejected = static_cast<std::int64_t>(ledger_["rejected"].size());
    r.pending = static_cast<std::int64_t>(pending().size());
    r.round = ledger_["round"].get<std::int64_t>();
    r.latest = current_model();
    return r;
  }

 private:
  bool done() const { return o_.max_updates > 0 && ledger_["updates"].get<std::int64_t>() >= o_.max_updates; }
  json& pending() { return ledger_["pending"]; }
  std::string current_model() const { return (fs::path(o_.outdir) / ledger_["model"].get<std::string>()).string(); }

  // Reads the ledger, or starts one from the initial model (copied into the output folder).
  void open_ledger() {
    const auto src = io::open_source(o_.model);
    io::expect_kind(*src, {io::Kind::Model});
    const std::int64_t round = src->attributes().get_int("round").value_or(0);
    const std::string checksum = io::tensors_checksum(*src);
    if (fs::exists(ledger_path_)) {
      std::ifstream f(ledger_path_);
      std::stringstream text;
      text << f.rdbuf();
      ledger_ = parse_json(text.str(), ledger_path_ + ": ledger");
      try {
        if (ledger_.value("format", "") != kLedgerFormat) throw std::runtime_error("not a loco-aggregate ledger");
        for (const char* key :
             {"updates", "round", "model", "initial_round", "checksums", "pending", "applied", "rejected"})
          if (!ledger_.contains(key)) throw std::runtime_error(fmt::format("no '{}'", key));
      } catch (const std::exception& e) {
        throw_error(ErrorKind::BadInput, "{}: corrupt ledger: {}", ledger_path_, e.what());
      }
      const std::string key = std::to_string(ledger_["initial_round"].get<std::int64_t>());
      if (ledger_["initial_round"].get<std::int64_t>() != round || ledger_["checksums"].value(key, "") != checksum)
        throw_error(ErrorKind::BadInput,
                    "{}: the ledger started from another model (round {}, checksum {}), not {} (round {}, checksum {})",
                    ledger_path_, ledger_["initial_round"].get<std::int64_t>(), ledger_["checksums"].value(key, "?"),
                    o_.model, round, checksum);
      for (const auto& e : ledger_["applied"]) known_.insert(e["file"].get<std::string>());
      for (const auto& e : ledger_["rejected"]) known_.insert(e["file"].get<std::string>());
      for (const auto& e : ledger_["pending"]) known_.insert(e.get<std::string>());
      log::info("{}: resuming at round {} after {} updates ({} pending)", ledger_path_,
                ledger_["round"].get<std::int64_t>(), ledger_["updates"].get<std::int64_t>(), pending().size());
      point_latest();
      return;
    }
    const std::string first = (fs::path(o_.outdir) / model_name(round)).string();
    if (!fs::exists(first) || checksum_of(first) != checksum) {
      io::AtomicOutput out(first);
      fs::copy_file(o_.model, out.temp_path(), fs::copy_options::overwrite_existing);
      out.commit();
    }
    ledger_ = json{{"format", kLedgerFormat},
                   {"initial_round", round},
                   {"round", round},
                   {"updates", 0},
                   {"model", model_name(round)},
                   {"checksums", json{{std::to_string(round), checksum}}},
                   {"pending", json::array()},
                   {"applied", json::array()},
                   {"rejected", json::array()}};
    save();
    point_latest();
  }

  void save() { write_atomic(ledger_path_, ledger_.dump(1) + "\n"); }

  // OUTDIR/latest (the newest model's file name) and the symlink OUTDIR/latest.h5, replaced atomically.
  void point_latest() {
    const std::string name = ledger_["model"].get<std::string>();
    write_atomic((fs::path(o_.outdir) / "latest").string(), name + "\n");
    const fs::path link = fs::path(o_.outdir) / "latest.h5";
    const fs::path tmp = fs::path(o_.outdir) / fmt::format(".latest.h5.tmp-{}", ::getpid());
    std::error_code ec;
    fs::remove(tmp, ec);
    fs::create_symlink(name, tmp, ec);
    if (!ec) fs::rename(tmp, link, ec);
    if (ec) throw_error(ErrorKind::Io, "{}: cannot point it at {}: {}", link.string(), name, ec.message());
  }

  void reject(const std::string& file, const std::string& why) {
    log::warn("{}: rejected: {}", (fs::path(o_.dir) / file).string(), why);
    ledger_["rejected"].push_back({{"file", file}, {"reason", why}});
  }

  // Checks a new delta's base against the versions of this ledger; the reason to reject it, or "".
  std::string check_base(const std::string& path) {
    const auto src = io::open_source(path);
    const io::Kind kind = io::file_kind(*src);
    if (kind != io::Kind::Delta &&
        !(kind == io::Kind::Compressed && src->attributes().get_string("source_kind").value_or("") == "delta"))
      return "not a delta file";
    const auto round = src->attributes().get_int("round");
    const auto base = src->attributes().get_string("base_checksum");
    if (!round || !base) return "no round or base_checksum attribute";
    const std::string known = ledger_["checksums"].value(std::to_string(*round), "");
    if (known != *base)
      return fmt::format("its base (round {}, base_checksum {}) is not a model version of this run{}", *round, *base,
                         known.empty() ? "" : fmt::format(" (round {} was {})", *round, known));
    return "";
  }

  // New files of the folder, by modification time then name, appended to pending (or rejected).
  void scan() {
    struct Entry {
      fs::file_time_type time;
      std::string name;
    };
    std::vector<Entry> fresh;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(o_.dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.empty() || name[0] == '.' || e.path().extension() != ".h5" || known_.count(name)) continue;
      std::error_code ec2;
      if (!e.is_regular_file(ec2)) continue;
      const auto t = e.last_write_time(ec2);
      if (ec2) continue;
      fresh.push_back({t, name});
    }
    if (ec) throw_error(ErrorKind::Io, "{}: cannot list the folder: {}", o_.dir, ec.message());
    if (fresh.empty()) return;
    std::sort(fresh.begin(), fresh.end(),
              [](const Entry& a, const Entry& b) { return a.time != b.time ? a.time < b.time : a.name < b.name; });
    for (const Entry& e : fresh) {
      const std::string path = (fs::path(o_.dir) / e.name).string();
      std::string why;
      try {
        why = check_base(path);
      } catch (const Error& err) {
        if (err.kind() == ErrorKind::Io) continue;  // gone or unreadable for now: look again next time
        why = err.what();
      }
      known_.insert(e.name);
      if (why.empty()) pending().push_back(e.name);
      else reject(e.name, why);
    }
    save();
  }

  // One update from the first k pending deltas.
  void update(std::size_t k) {
    std::vector<std::string> names, paths;
    for (std::size_t j = 0; j < k; ++j) names.push_back(pending()[j].get<std::string>());
    const std::int64_t round = ledger_["round"].get<std::int64_t>();
    const std::string out = (fs::path(o_.outdir) / model_name(round + 1)).string();
    AggregateOptions opt = o_.aggregate;
    opt.allow_stale = true;
    opt.allow_same_worker = true;
    opt.min_deltas = 1;
    // A pending file removed from the folder (by hand) cannot be applied: reject it rather than stop.
    for (std::size_t j = names.size(); j-- > 0;)
      if (!fs::exists(fs::path(o_.dir) / names[j])) {
        reject(names[j], "the file disappeared from the folder before it was applied");
        names.erase(names.begin() + static_cast<std::ptrdiff_t>(j));
      }
    for (;;) {
      paths.clear();
      for (const auto& n : names) paths.push_back((fs::path(o_.dir) / n).string());
      if (names.empty()) {
        remove_pending(k);
        save();
        return;
      }
      try {
        const AggregateSummary s = aggregate(current_model(), paths, out, opt);
        io::forget_inputs();
        record(s, k, out);
        if (log_) *log_ << summary_json(s) << std::endl;
        return;
      } catch (const Error& err) {
        io::forget_inputs();
        if (err.kind() != ErrorKind::BadInput && err.kind() != ErrorKind::Check && err.kind() != ErrorKind::Numeric &&
            err.kind() != ErrorKind::Usage)
          throw;
        // A refusal naming one of the files rejects that file and retries the rest; otherwise the
        // whole buffer is rejected (it cannot make an update).
        std::vector<std::size_t> named;
        for (std::size_t j = 0; j < names.size(); ++j)
          if (std::string_view(err.what()).find(paths[j]) != std::string_view::npos) named.push_back(j);
        if (named.size() == 1 && names.size() > 1) {
          reject(names[named[0]], err.what());
          names.erase(names.begin() + static_cast<std::ptrdiff_t>(named[0]));
          continue;
        }
        for (const auto& n : names) reject(n, err.what());
        remove_pending(k);
        save();
        return;
      }
    }
  }

  void remove_pending(std::size_t k) {
    json rest = json::array();
    for (std::size_t j = k; j < pending().size(); ++j) rest.push_back(pending()[j]);
    pending() = std::move(rest);
  }

  void record(const AggregateSummary& s, std::size_t k, const std::string& out) {
    const std::int64_t update = ledger_["updates"].get<std::int64_t>() + 1;
    auto name_of = [&](const std::string& path) { return fs::path(path).filename().string(); };
    for (const auto& d : s.dropped) reject(name_of(d.path), d.reason);
    for (const auto& c : s.contributors)
      ledger_["applied"].push_back({{"file", name_of(c.path)},
                                    {"update", update},
                                    {"worker", c.worker ? json(*c.worker) : json(nullptr)},
                                    {"round", c.round ? json(*c.round) : json(nullptr)},
                                    {"staleness", c.staleness},
                                    {"weight", c.weight}});
    // The first k pending files are now applied, dropped, or (refused by update()) rejected.
    remove_pending(k);
    ledger_["updates"] = update;
    ledger_["round"] = s.round;
    ledger_["model"] = name_of(out);
    ledger_["checksums"][std::to_string(s.round)] = checksum_of(out);
    save();
    point_latest();
    ++updates_;
    log::info("update {}: round {} from {} delta(s) -> {}", update, s.round, s.contributors.size(), out);
  }

  WatchOptions o_;
  std::ostream* log_;
  std::string ledger_path_;
  json ledger_;
  std::set<std::string> known_;  // file names in the ledger (pending, applied, rejected)
  std::int64_t updates_ = 0;
};

}  // namespace

WatchReport watch(const WatchOptions& options, std::ostream* log) {
  Watcher w(options, log);
  return w.run();
}

}  // namespace loco::aggregate
