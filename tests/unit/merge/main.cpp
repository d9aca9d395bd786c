// Boost.Test entry point of the merge unit tests.
#define BOOST_TEST_MODULE loco_merge
#include <boost/test/unit_test.hpp>
