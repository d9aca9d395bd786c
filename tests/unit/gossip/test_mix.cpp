// The gossip step on files: hand-computed mixes of three small models, identification of the
// neighbours' files, independence of file order and block size, /state kept local, refusals.
#include <boost/test/unit_test.hpp>

#include <filesystem>

#include "../support.hpp"
#include "helpers.hpp"
#include "loco/gossip/gossip.hpp"

using namespace loco;
using namespace loco::gossip;
using namespace loco::gossip::test;
using V = std::vector<float>;

namespace {

// Three nodes' models: w (2×2 float32), h (float16), n (int64, copied), and node 1's a /state slot.
void write_three(const loco::test::TempDir& d, bool tagged) {
  const auto node = [&](std::int64_t i) { return tagged ? std::optional<std::int64_t>(i) : std::nullopt; };
  write_model(d / "n0.h5", {{"w", {2, 2}, {1, 2, 3, 4}}, {"h", {2}, {0.5, 1}, DType::F16}, {"n", {1}, {5}, DType::I64}},
              node(0));
  write_model(d / "n1.h5",
              {{"w", {2, 2}, {4, 8, -3, 0.25}},
               {"h", {2}, {1.5, 2}, DType::F16},
               {"n", {1}, {6}, DType::I64},
               {"w", {2, 2}, {9, 9, 9, 9}, DType::F32, "state/momentum"}},
              node(1));
  write_model(d / "n2.h5", {{"w", {2, 2}, {7, -1, 9, 1}}, {"h", {2}, {4, -3}, DType::F16}, {"n", {1}, {7}, DType::I64}},
              node(2));
}

GossipOptions options(const char* topology, std::int64_t node, std::int64_t nodes) {
  GossipOptions o;
  o.topology = parse_topology(topology);
  o.node = node;
  o.nodes = nodes;
  return o;
}

bool same_file_content(const std::string& a, const std::string& b, const std::string& name) {
  return read_values(a, name) == read_values(b, name);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(mix)

BOOST_AUTO_TEST_CASE(ring_of_three_is_the_mean) {
  loco::test::TempDir d("gossip");
  write_three(d, true);
  // Ring of 3: every weight 1/3. Sums in double of exactly representable values, one rounding:
  // w = (1+4+7, 2+8−1, 3−3+9, 4+0.25+1)/3 = (4, 3, 3, 1.75); h = (2, 0) (then to float16, exact).
  const auto s = gossip_files(d / "n1.h5", {d / "n2.h5", d / "n0.h5"}, d / "out.h5", options("ring", 1, 3));
  BOOST_CHECK(read_values(d / "out.h5", "w") == (V{4, 3, 3, 1.75f}));
  BOOST_CHECK(read_values(d / "out.h5", "h") == (V{2, 0}));
  BOOST_CHECK(read_values(d / "out.h5", "n") == (V{6}));                             // node 1's integers
  BOOST_CHECK(read_values(d / "out.h5", "w", "state/momentum") == (V{9, 9, 9, 9}));  // /state kept local
  BOOST_CHECK_EQUAL(s.weights.size(), 3u);
  BOOST_CHECK_EQUAL(s.weights[0].node, 0);
  BOOST_CHECK_EQUAL(s.round, 3);  // the models' round
  BOOST_CHECK_EQUAL(s.parameters, 6);
  BOOST_CHECK_EQUAL(s.bytes_received, 2u * (16 + 4));
  auto src = io::open_source(d / "out.h5", false);
  BOOST_CHECK_EQUAL(src->attributes().get_int("node").value(), 1);
  BOOST_CHECK_EQUAL(src->attributes().get_int("round").value(), 3);
  BOOST_CHECK_EQUAL(src->attributes().get_string("gossip_topology").value(), "ring");
  BOOST_CHECK_EQUAL(src->group_attributes("state/momentum")
                        .get_int("step")
                        .value_or(src->group_attributes("state").get_int("step").value_or(-1)),
                    7);
  BOOST_CHECK_EQUAL(src->tensors().size(), 4u);
}

BOOST_AUTO_TEST_CASE(unequal_weights_and_one_peer) {
  loco::test::TempDir d("gossip");
  write_three(d, false);
  // One-peer exponential on 4 nodes at round 1: node 0 averages ½/½ with node 2 (untagged files:
  // by order). w = ((1+7)/2, (2−1)/2, (3+9)/2, (4+1)/2).
  auto o = options("one-peer-exponential", 0, 4);
  o.round = 1;
  gossip_files(d / "n0.h5", {d / "n2.h5"}, d / "p.h5", o);
  BOOST_CHECK(read_values(d / "p.h5", "w") == (V{4, 0.5f, 6, 2.5f}));
  // Ring on 2 nodes: ½ each.
  gossip_files(d / "n0.h5", {d / "n1.h5"}, d / "r2.h5", options("ring", 0, 2));
  BOOST_CHECK(read_values(d / "r2.h5", "w") == (V{2.5f, 5, 0, 2.125f}));
  // A node alone: its model, copied exactly.
  gossip_files(d / "n2.h5", {}, d / "alone.h5", options("ring", 0, 1));
  BOOST_CHECK(read_values(d / "alone.h5", "w") == (V{7, -1, 9, 1}));
  // 1/3 weights on values that do not divide: the float64 sum rounded once.
  write_model(d / "a.h5", {{"w", {1}, {1}}}, 0);
  write_model(d / "b.h5", {{"w", {1}, {1}}}, 1);
  write_model(d / "c.h5", {{"w", {1}, {0}}}, 2);
  gossip_files(d / "a.h5", {d / "b.h5", d / "c.h5"}, d / "t.h5", options("complete", 0, 3));
  const double want = 1.0 / 3 + 1.0 / 3;  // W_00 = 1 − 2/3 in double, plus 1/3
  BOOST_CHECK_EQUAL(read_values(d / "t.h5", "w")[0], static_cast<float>((1.0 - (1.0 / 3 + 1.0 / 3)) + 1.0 / 3));
  BOOST_CHECK_CLOSE(read_values(d / "t.h5", "w")[0], want, 1e-5);
}

BOOST_AUTO_TEST_CASE(order_and_block_size_do_not_matter) {
  loco::test::TempDir d("gossip");
  std::vector<float> big(300 * 7);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
  for (std::int64_t node = 0; node < 5; ++node) {
    for (auto& v : big) v = v * 1.1f + 0.01f * static_cast<float>(node);
    write_model(d / ("m" + std::to_string(node) + ".h5"), {{"big", {300, 7}, big}, {"b", {3}, {1, 2, 3}}}, node);
  }
  // Complete graph on 5: node 2 reads four neighbours, given in two orders and with 28-byte blocks.
  gossip_files(d / "m2.h5", {d / "m0.h5", d / "m1.h5", d / "m3.h5", d / "m4.h5"}, d / "a.h5",
               options("complete", 2, 5));
  auto o = options("complete", 2, 5);
  o.block_bytes = 28;
  gossip_files(d / "m2.h5", {d / "m4.h5", d / "m3.h5", d / "m1.h5", d / "m0.h5"}, d / "b.h5", o);
  BOOST_CHECK(same_file_content(d / "a.h5", d / "b.h5", "big"));
  BOOST_CHECK(same_file_content(d / "a.h5", d / "b.h5", "b"));
  // Against a direct float64 computation.
  std::vector<std::vector<float>> in;
  for (int node = 0; node < 5; ++node) in.push_back(read_values(d / ("m" + std::to_string(node) + ".h5"), "big"));
  const auto got = read_values(d / "a.h5", "big");
  for (std::size_t e = 0; e < got.size(); ++e) {
    double acc = 0;
    for (int node = 0; node < 5; ++node) acc += (node == 2 ? 1.0 - 4 * 0.2 : 0.2) * in[node][e];
    BOOST_CHECK_EQUAL(got[e], static_cast<float>(acc));
  }
}

BOOST_AUTO_TEST_CASE(refusals_leave_nothing_behind) {
  loco::test::TempDir d("gossip");
  write_three(d, true);
  const auto none = [&] { BOOST_CHECK(!std::filesystem::exists(d / "o.h5")); };
  // Wrong count for the degree.
  loco::test::require_error([&] { gossip_files(d / "n1.h5", {d / "n0.h5"}, d / "o.h5", options("ring", 1, 3)); },
                            ErrorKind::Usage,
                            {"node 1 of ring on 3 nodes", "2 neighbours (0, 2)", "1 neighbour model given"});
  // A file from a node that is not a neighbour: ring of 5, node 1's neighbours are 0 and 2.
  write_model(d / "n4.h5", {{"w", {2, 2}, {1, 1, 1, 1}}, {"h", {2}, {0, 0}, DType::F16}, {"n", {1}, {5}, DType::I64}},
              4);
  loco::test::require_error(
      [&] {
        gossip_files(d / "n1.h5", {d / "n0.h5", d / "n4.h5"}, d / "o.h5", options("ring", 1, 5));
      },
      ErrorKind::BadInput, {"n4.h5 is node 4's model", "not a neighbour of node 1", "neighbours 0, 2"});
  // The own model of another node.
  loco::test::require_error(
      [&] {
        gossip_files(d / "n0.h5", {d / "n1.h5", d / "n2.h5"}, d / "o.h5", options("ring", 1, 3));
      },
      ErrorKind::BadInput, {"n0.h5 is node 0's model", "expected node 1's"});
  // Two files of one node.
  std::filesystem::copy_file(d / "n0.h5", d / "n0b.h5");
  loco::test::require_error(
      [&] {
        gossip_files(d / "n1.h5", {d / "n0.h5", d / "n0b.h5"}, d / "o.h5", options("ring", 1, 3));
      },
      ErrorKind::BadInput, {"both node 0's model"});
  loco::test::require_error(
      [&] {
        gossip_files(d / "n1.h5", {d / "n0.h5", d / "n0.h5"}, d / "o.h5", options("ring", 1, 3));
      },
      ErrorKind::Usage, {"listed twice"});
  // Another round.
  write_model(d / "old.h5", {{"w", {2, 2}, {1, 1, 1, 1}}, {"h", {2}, {0, 0}, DType::F16}, {"n", {1}, {5}, DType::I64}},
              2, 2);
  loco::test::require_error(
      [&] {
        gossip_files(d / "n1.h5", {d / "n0.h5", d / "old.h5"}, d / "o.h5", options("ring", 1, 3));
      },
      ErrorKind::BadInput, {"old.h5 is of round 2", "round 3"});
  // Some tagged, some not.
  write_model(d / "untagged.h5",
              {{"w", {2, 2}, {1, 1, 1, 1}}, {"h", {2}, {0, 0}, DType::F16}, {"n", {1}, {5}, DType::I64}}, std::nullopt);
  loco::test::require_error(
      [&] {
        gossip_files(d / "n1.h5", {d / "n0.h5", d / "untagged.h5"}, d / "o.h5", options("ring", 1, 3));
      },
      ErrorKind::BadInput, {"1 of the 2 neighbour models carry a 'node' attribute"});
  // Another model config, another shape, a missing tensor.
  write_model(d / "cfg.h5", {{"w", {2, 2}, {1, 1, 1, 1}}, {"h", {2}, {0, 0}, DType::F16}, {"n", {1}, {5}, DType::I64}},
              2, 3, R"({"arch":"other"})");
  loco::test::require_error(
      [&] {
        gossip_files(d / "n1.h5", {d / "n0.h5", d / "cfg.h5"}, d / "o.h5", options("ring", 1, 3));
      },
      ErrorKind::BadInput, {"cfg.h5"});
  write_model(d / "shape.h5", {{"w", {4}, {1, 1, 1, 1}}, {"h", {2}, {0, 0}, DType::F16}, {"n", {1}, {5}, DType::I64}},
              2);
  loco::test::require_error(
      [&] {
        gossip_files(d / "n1.h5", {d / "n0.h5", d / "shape.h5"}, d / "o.h5", options("ring", 1, 3));
      },
      ErrorKind::BadInput, {"tensor w: shape [4] in", "shape.h5"});
  write_model(d / "lack.h5", {{"w", {2, 2}, {1, 1, 1, 1}}, {"n", {1}, {5}, DType::I64}}, 2);
  loco::test::require_error(
      [&] {
        gossip_files(d / "n1.h5", {d / "n0.h5", d / "lack.h5"}, d / "o.h5", options("ring", 1, 3));
      },
      ErrorKind::BadInput, {"lack.h5: no tensor h"});
  // A non-finite mix.
  write_model(d / "inf.h5",
              {{"w", {2, 2}, {1, 1, 1, INFINITY}}, {"h", {2}, {0, 0}, DType::F16}, {"n", {1}, {5}, DType::I64}}, 2);
  loco::test::require_error(
      [&] {
        gossip_files(d / "n1.h5", {d / "n0.h5", d / "inf.h5"}, d / "o.h5", options("ring", 1, 3));
      },
      ErrorKind::Numeric, {"tensor w", "element 3"});
  loco::test::require_error([&] { gossip_files(d / "n1.h5", {}, d / "o.h5", options("ring", 3, 3)); }, ErrorKind::Usage,
                            {"--node 3 is outside 0..2"});
  none();
  io::forget_inputs();
}

BOOST_AUTO_TEST_SUITE_END()
