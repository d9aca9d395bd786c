// Boost.Test entry point of the core unit tests.
#define BOOST_TEST_MODULE loco_core
#include <boost/test/unit_test.hpp>
