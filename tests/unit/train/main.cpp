// Boost.Test entry point of the training-step unit tests (worker, eval, init, model and data files).
#define BOOST_TEST_MODULE loco_train
#include <boost/test/unit_test.hpp>
