// Boost.Test entry point of the aggregate unit tests.
#define BOOST_TEST_MODULE loco_aggregate
#include <boost/test/unit_test.hpp>
