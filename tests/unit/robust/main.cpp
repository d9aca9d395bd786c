// Boost.Test entry point of the robust unit tests.
#define BOOST_TEST_MODULE loco_robust
#include <boost/test/unit_test.hpp>
