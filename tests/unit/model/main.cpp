// Boost.Test entry point of the model unit tests.
#define BOOST_TEST_MODULE loco_model
#include <boost/test/unit_test.hpp>
