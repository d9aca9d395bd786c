// Boost.Test entry point of the gossip unit tests (topologies, schedules, mixing, consensus distance).
#define BOOST_TEST_MODULE loco_gossip
#include <boost/test/unit_test.hpp>
