// Communication schedules: the rounds each one gossips in, by hand, and its refusals.
#include <boost/test/unit_test.hpp>

#include "../support.hpp"
#include "loco/gossip/schedule.hpp"

using namespace loco;
using namespace loco::gossip;
using V = std::vector<std::int64_t>;

BOOST_AUTO_TEST_SUITE(schedule)

BOOST_AUTO_TEST_CASE(rounds_by_hand) {
  BOOST_CHECK(communicating_rounds(parse_schedule("every"), 4) == (V{1, 2, 3, 4}));
  BOOST_CHECK(communicating_rounds(parse_schedule("every:period=3"), 10) == (V{3, 6, 9}));
  // Sparse every 5 rounds, then every round after 80% of 20 rounds (round 16).
  BOOST_CHECK(communicating_rounds(parse_schedule("late:from=0.8,period=5"), 20) == (V{5, 10, 15, 17, 18, 19, 20}));
  BOOST_CHECK(communicating_rounds(parse_schedule("late:from=0.5,dense_period=2"), 10) == (V{6, 8, 10}));
  // 0.3 · 10 = 3 despite 0.3 being slightly below 3/10 in binary.
  BOOST_CHECK(communicating_rounds(parse_schedule("late:from=0.3"), 10) == (V{4, 5, 6, 7, 8, 9, 10}));
  BOOST_CHECK(communicating_rounds(parse_schedule("late:from=1"), 10).empty());
  BOOST_CHECK(communicating_rounds(parse_schedule("window:start=0.2,length=0.3"), 10) == (V{3, 4, 5}));
  BOOST_CHECK(communicating_rounds(parse_schedule("window:start=0.5,length=0.5,period=4"), 10) ==
              (V{4, 6, 7, 8, 9, 10}));
  BOOST_CHECK(communicating_rounds(parse_schedule("none"), 10).empty());
  BOOST_CHECK(communicates(parse_schedule("every:period=2"), 2, 2));
  BOOST_CHECK(!communicates(parse_schedule("every:period=2"), 1, 2));
}

BOOST_AUTO_TEST_CASE(formatting_and_refusals) {
  BOOST_CHECK_EQUAL(format_schedule(parse_schedule("late:from=0.9")), "late:from=0.9,period=0,dense_period=1");
  BOOST_CHECK_EQUAL(format_schedule(parse_schedule("every")), "every:period=1");
  test::require_error([] { parse_schedule("often"); }, ErrorKind::Usage, {"'often'", "unknown"});
  test::require_error([] { parse_schedule("every:period=0"); }, ErrorKind::Usage, {"period=0 is not ≥ 1"});
  test::require_error([] { parse_schedule("late"); }, ErrorKind::Usage, {"needs from=F"});
  test::require_error([] { parse_schedule("late:from=1.5"); }, ErrorKind::Usage, {"[0, 1]"});
  test::require_error([] { parse_schedule("window:start=0.8,length=0.4"); }, ErrorKind::Usage, {"at most 1"});
  test::require_error([] { parse_schedule("none:period=2"); }, ErrorKind::Usage, {"unknown parameter"});
  test::require_error([] { communicates(parse_schedule("every"), 0, 5); }, ErrorKind::Usage, {"outside 1..5"});
  test::require_error([] { communicates(parse_schedule("every"), 6, 5); }, ErrorKind::Usage, {"outside 1..5"});
}

BOOST_AUTO_TEST_SUITE_END()
