// Boost.Test entry point of the data unit tests (readers, samplers, partitioners, batches).
#define BOOST_TEST_MODULE loco_data
#include <boost/test/unit_test.hpp>
