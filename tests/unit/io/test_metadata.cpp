// Typed root attributes through string-only metadata (io/metadata.hpp).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "loco/core/attributes.hpp"
#include "loco/core/error.hpp"
#include "loco/io/metadata.hpp"
#include "support.hpp"

using loco::Attributes;
using loco::ErrorKind;
using loco::test::require_error;

namespace {

Attributes as_strings(const std::vector<std::pair<std::string, std::string>>& meta) {
  Attributes a;
  for (const auto& [k, v] : meta) a.set(k, v);
  return a;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(metadata)

BOOST_AUTO_TEST_CASE(every_type_round_trips_exactly) {
  Attributes root;
  root.set("kind", std::string("delta"));
  root.set("round", std::int64_t{7});
  root.set("big", std::numeric_limits<std::int64_t>::min());
  root.set("loss_first", 0.1);  // the shortest text "0.1" reads back to the same double
  root.set("tiny", 4.9406564584124654e-324);
  root.set("third", 1.0 / 3.0);
  root.set("neg_zero", -0.0);
  root.set("inf", -std::numeric_limits<double>::infinity());
  root.set("nan", std::numeric_limits<double>::quiet_NaN());
  root.set("dims", std::vector<std::int64_t>{3, -1, 0});
  root.set("coef", std::vector<double>{0.5, 1e-300, -2.25});
  root.set("count_text", std::string("12"));  // a string that looks like a number stays a string
  const auto meta = loco::io::attributes_to_metadata(root);
  BOOST_TEST(meta.back().first == std::string(loco::io::kAttributeTypesKey));
  const Attributes back = loco::io::attributes_from_metadata(as_strings(meta), "f.safetensors");
  BOOST_TEST(back.size() == root.size());
  for (const auto& e : root) {
    const auto* v = back.find(e.name);
    BOOST_REQUIRE_MESSAGE(v != nullptr, e.name);
    BOOST_TEST(v->index() == e.value.index(), e.name);
    if (const auto* d = std::get_if<double>(&e.value)) {
      const double g = std::get<double>(*v);
      BOOST_TEST((std::isnan(*d) ? std::isnan(g) : std::signbit(g) == std::signbit(*d) && g == *d), e.name);
    } else {
      BOOST_TEST((*v == e.value), e.name);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_hand_written_file_gets_the_documented_types) {
  Attributes a;
  a.set("kind", std::string("delta"));
  a.set("round", std::string("3"));
  a.set("worker", std::string("-2"));
  a.set("loss_mean", std::string("2.5e-1"));
  a.set("note", std::string("42"));
  const Attributes t = loco::io::attributes_from_metadata(a, "f.safetensors");
  BOOST_TEST(*t.get_int("round") == 3);
  BOOST_TEST(*t.get_int("worker") == -2);
  BOOST_TEST(*t.get_double("loss_mean") == 0.25);
  BOOST_TEST(*t.get_string("note") == "42");
  BOOST_TEST(!t.get_int("note"));
}

BOOST_AUTO_TEST_CASE(texts_that_do_not_read_as_their_type_are_refused) {
  Attributes a;
  a.set("round", std::string("3.5"));
  require_error([&] { loco::io::attributes_from_metadata(a, "f.safetensors"); }, ErrorKind::BadInput,
                {"f.safetensors", "round", "an integer", "3.5"});
  Attributes b;
  b.set("x", std::string("[1, 2.5]"));
  b.set(loco::io::kAttributeTypesKey, std::string(R"({"x":"int64[]"})"));
  require_error([&] { loco::io::attributes_from_metadata(b, "g.safetensors"); }, ErrorKind::BadInput,
                {"g.safetensors", "x", "loco_attribute_types"});
  Attributes c;
  c.set("x", std::string("1"));
  c.set(loco::io::kAttributeTypesKey, std::string(R"({"x":"complex"})"));
  require_error([&] { loco::io::attributes_from_metadata(c, "h.safetensors"); }, ErrorKind::BadInput,
                {"h.safetensors", "unknown type"});
  Attributes d;
  d.set(loco::io::kAttributeTypesKey, std::string("[1]"));
  require_error([&] { loco::io::attributes_from_metadata(d, "i.safetensors"); }, ErrorKind::BadInput,
                {"i.safetensors", "not a JSON object"});
  Attributes r;
  r.set(loco::io::kAttributeTypesKey, std::string("{}"));
  require_error([&] { loco::io::attributes_to_metadata(r); }, ErrorKind::Usage, {"reserved"});
}

BOOST_AUTO_TEST_SUITE_END()
