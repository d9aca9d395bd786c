// Boost.Test entry point of the codec unit tests.
#define BOOST_TEST_MODULE loco_compress
#include <boost/test/unit_test.hpp>
