// Boost.Test entry point of the io unit tests.
#define BOOST_TEST_MODULE loco_io
#include <boost/test/unit_test.hpp>
