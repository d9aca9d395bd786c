// Boost.Test entry point of the optimizer unit tests.
#define BOOST_TEST_MODULE loco_optim
#include <boost/test/unit_test.hpp>
