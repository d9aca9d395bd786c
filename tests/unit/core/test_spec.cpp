// Tests of the strict number parsers and the "name:key=value,..." spec parser (core/spec.hpp):
// hand cases of accepted text with the value each must give, and malformed input with the words
// its message must hold.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"
#include "support.hpp"

namespace {

using loco::ErrorKind;
using loco::Range;
using loco::Spec;
using loco::test::require_error;

}  // namespace

BOOST_AUTO_TEST_SUITE(numbers)

BOOST_AUTO_TEST_CASE(integers) {
  BOOST_TEST(loco::parse_int("0", "--n") == 0);
  BOOST_TEST(loco::parse_int("42", "--n") == 42);
  BOOST_TEST(loco::parse_int("+7", "--n") == 7);
  BOOST_TEST(loco::parse_int("-7", "--n") == -7);
  BOOST_TEST(loco::parse_int("9223372036854775807", "--n") == std::numeric_limits<std::int64_t>::max());
  BOOST_TEST(loco::parse_int("-9223372036854775808", "--n") == std::numeric_limits<std::int64_t>::min());
  BOOST_TEST(loco::parse_int("5", "--n", 1, 5) == 5);
  for (const char* bad : {"", "x", "1.5", "2.0", "1e3", " 1", "1 ", "0x10", "++1", "+-1", "+", "-", "1,"})
    require_error([&] { loco::parse_int(bad, "--n"); }, ErrorKind::Usage,
                  {"--n: '" + std::string(bad) + "' is not an integer"});
  require_error([] { loco::parse_int("9223372036854775808", "--n"); }, ErrorKind::Usage,
                {"'9223372036854775808'", "outside the range of a 64-bit integer"});
  require_error([] { loco::parse_int("0", "--n", 1); }, ErrorKind::Usage, {"--n: '0' is not ≥ 1"});
  require_error([] { loco::parse_int("6", "--n", 1, 5); }, ErrorKind::Usage, {"'6' is not in [1, 5]"});
  require_error([] { loco::parse_int("3", "--n", std::numeric_limits<std::int64_t>::min(), 2); }, ErrorKind::Usage,
                {"'3' is not ≤ 2"});
}

BOOST_AUTO_TEST_CASE(sizes) {
  BOOST_TEST(loco::parse_size("0", "--k") == 0u);
  BOOST_TEST(loco::parse_size("+3", "--k") == 3u);
  BOOST_TEST(loco::parse_size("18446744073709551615", "--k") == std::numeric_limits<std::uint64_t>::max());
  for (const char* bad : {"-1", "-0", "x", "", "1.0", "+-1"})
    require_error([&] { loco::parse_size(bad, "--k"); }, ErrorKind::Usage, {"is not an integer ≥ 0"});
  require_error([] { loco::parse_size("18446744073709551616", "--k"); }, ErrorKind::Usage, {"larger than 2^64"});
}

BOOST_AUTO_TEST_CASE(reals) {
  BOOST_TEST(loco::parse_real("0.5", "--lr") == 0.5);
  BOOST_TEST(loco::parse_real("+0.5", "--lr") == 0.5);
  BOOST_TEST(loco::parse_real("-2", "--lr") == -2.0);
  BOOST_TEST(loco::parse_real("1e-3", "--lr") == 1e-3);
  BOOST_TEST(loco::parse_real("1E+2", "--lr") == 100.0);
  BOOST_TEST(loco::parse_real(".25", "--lr") == 0.25);
  BOOST_TEST(loco::parse_real("1.7976931348623157e308", "--lr") == std::numeric_limits<double>::max());
  for (const char* bad : {"", "x", "1.5x", " 1", "1 ", "0x1p3", "++1", "+-1", "1,5", "e5", "."})
    require_error([&] { loco::parse_real(bad, "--lr"); }, ErrorKind::Usage,
                  {"--lr: '" + std::string(bad) + "' is not a number"});
  for (const char* nonfinite : {"nan", "NaN", "inf", "-inf", "infinity", "+inf"})
    require_error([&] { loco::parse_real(nonfinite, "--lr"); }, ErrorKind::Usage, {"is not a finite number"});
  // Beyond a double in either direction: refused, not rounded to ±inf or 0.
  for (const char* out : {"1e999", "-1e999", "1e-999"})
    require_error([&] { loco::parse_real(out, "--lr"); }, ErrorKind::Usage, {"outside the range of a double"});
  // Where the range allows them, non-finite values read as such.
  BOOST_TEST(std::isnan(loco::parse_real("nan", "--x", Range::allow_non_finite())));
  BOOST_TEST(loco::parse_real("-inf", "--x", Range::allow_non_finite()) == -std::numeric_limits<double>::infinity());
}

BOOST_AUTO_TEST_CASE(ranges) {
  BOOST_TEST(loco::parse_real("0", "--b", Range::at_least(0)) == 0.0);
  BOOST_TEST(loco::parse_real("1", "--b", Range::between(0, 1, true, false)) == 1.0);
  require_error([] { loco::parse_real("-0.1", "--b", Range::at_least(0)); }, ErrorKind::Usage, {"'-0.1' is not ≥ 0"});
  require_error([] { loco::parse_real("0", "--b", Range::above(0)); }, ErrorKind::Usage, {"'0' is not > 0"});
  require_error([] { loco::parse_real("1", "--b", Range::between(0, 1, false, true)); }, ErrorKind::Usage,
                {"'1' is not in [0, 1)"});
  require_error([] { loco::parse_real("0", "--b", Range::between(0, 1, true, false)); }, ErrorKind::Usage,
                {"'0' is not in (0, 1]"});
  BOOST_TEST(Range::between(0, 1).text() == "in [0, 1]");
  BOOST_TEST(Range::any_finite().text().empty());
  // A range with bounds never admits NaN: every comparison with it is false.
  BOOST_TEST(!Range::between(0, 1).contains(std::nan("")));
}

BOOST_AUTO_TEST_CASE(lists_booleans_and_byte_sizes) {
  BOOST_TEST(loco::parse_reals("1,0.5,-2", "--weights") == (std::vector<double>{1, 0.5, -2}),
             boost::test_tools::per_element());
  require_error([] { loco::parse_reals("1,x", "--weights"); }, ErrorKind::Usage, {"--weights: 'x' is not a number"});
  require_error([] { loco::parse_reals("1,", "--weights"); }, ErrorKind::Usage, {"--weights: '' is not a number"});
  require_error([] { loco::parse_reals("1,,2", "--weights"); }, ErrorKind::Usage, {"'' is not a number"});
  for (const char* t : {"true", "1", "yes"}) BOOST_TEST(loco::parse_bool(t, "--f"));
  for (const char* f : {"false", "0", "no"}) BOOST_TEST(!loco::parse_bool(f, "--f"));
  require_error([] { loco::parse_bool("2", "--f"); }, ErrorKind::Usage, {"--f: '2' is not a boolean"});
  BOOST_TEST(loco::parse_byte_size("5GB", "--max-shard") == 5000000000ull);
  BOOST_TEST(loco::parse_byte_size("500MB", "--max-shard") == 500000000ull);
  BOOST_TEST(loco::parse_byte_size("2GiB", "--max-shard") == (2ull << 30));
  BOOST_TEST(loco::parse_byte_size("64kib", "--max-shard") == 65536ull);
  BOOST_TEST(loco::parse_byte_size("123", "--max-shard") == 123ull);
  require_error([] { loco::parse_byte_size("5XB", "--max-shard"); }, ErrorKind::Usage,
                {"--max-shard: '5XB'", "unknown unit"});
  require_error([] { loco::parse_byte_size("GB", "--max-shard"); }, ErrorKind::Usage, {"not a number of bytes"});
  require_error([] { loco::parse_byte_size("0MB", "--max-shard"); }, ErrorKind::Usage, {"not a positive size"});
  require_error([] { loco::parse_byte_size("99999999999999999999", "--max-shard"); }, ErrorKind::Usage, {"too large"});
  require_error([] { loco::parse_byte_size("20000000TiB", "--max-shard"); }, ErrorKind::Usage, {"too large"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(specs)

BOOST_AUTO_TEST_CASE(names_keys_and_values) {
  Spec s(" adamw : lr = 0.001 ,wd=0.1,decoupled=yes,mode=fast", "optimizer");
  BOOST_TEST(s.name() == "adamw");
  BOOST_TEST(s.params().size() == 4u);
  BOOST_TEST(s.has("lr"));
  BOOST_TEST(!s.has("eps"));
  BOOST_TEST(*s.take_real("lr") == 0.001);
  BOOST_TEST(s.real("wd", 0.0, Range::at_least(0)) == 0.1);
  BOOST_TEST(s.real("eps", 1e-8) == 1e-8);  // absent: the fallback
  BOOST_TEST(!s.take_integer("period").has_value());
  BOOST_TEST(s.boolean("decoupled", false));
  BOOST_TEST(s.choice("mode", "slow", {"slow", "fast"}) == "fast");
  s.done();  // every key was read

  Spec bare("median", "reducer");
  BOOST_TEST(bare.name() == "median");
  BOOST_TEST(bare.params().empty());
  bare.done();
}

BOOST_AUTO_TEST_CASE(malformed_specs) {
  require_error([] { Spec("", "reducer"); }, ErrorKind::Usage, {"empty reducer spec"});
  require_error([] { Spec(":f=1", "reducer"); }, ErrorKind::Usage, {"reducer ':f=1'", "no name"});
  require_error([] { Spec("krum:", "reducer"); }, ErrorKind::Usage, {"nothing after ':'"});
  require_error([] { Spec("krum:f=1,", "reducer"); }, ErrorKind::Usage, {"reducer 'krum:f=1,'", "trailing comma"});
  require_error([] { Spec("krum:f=1,,m=2", "reducer"); }, ErrorKind::Usage, {"empty item between commas"});
  require_error([] { Spec("krum:f", "reducer"); }, ErrorKind::Usage, {"'f' is not key=value"});
  require_error([] { Spec("krum:=1", "reducer"); }, ErrorKind::Usage, {"'=1' is not key=value (empty key)"});
  require_error([] { Spec("krum:f=", "reducer"); }, ErrorKind::Usage, {"'f=' is not key=value (empty value)"});
  require_error([] { Spec("krum:f=1,f=2", "reducer"); }, ErrorKind::Usage, {"reducer 'krum:f=1,f=2': f given twice"});
}

BOOST_AUTO_TEST_CASE(values_name_their_key) {
  require_error([] { Spec("krum:f=x", "reducer").take_integer("f"); }, ErrorKind::Usage,
                {"reducer 'krum:f=x': f=x is not an integer"});
  require_error([] { Spec("krum:f=-1", "reducer").take_integer("f", 0); }, ErrorKind::Usage, {"f=-1 is not ≥ 0"});
  require_error([] { Spec("tm:beta=0.7", "reducer").real("beta", 0.2, Range::between(0, 0.5)); }, ErrorKind::Usage,
                {"beta=0.7 is not in [0, 0.5]"});
  require_error([] { Spec("adam:lr=nan", "optimizer").take_real("lr"); }, ErrorKind::Usage,
                {"lr=nan is not a finite number"});
  require_error([] { Spec("adam:lr=inf", "optimizer").take_real("lr"); }, ErrorKind::Usage,
                {"lr=inf is not a finite number"});
  require_error([] { Spec("p:shuffle=maybe", "partition").take_boolean("shuffle"); }, ErrorKind::Usage,
                {"shuffle=maybe is not a boolean"});
  require_error(
      [] {
        Spec("q:shape=round", "partition").choice("shape", "linear", {"linear", "power"});
      },
      ErrorKind::Usage, {"shape=round is not one of linear, power"});
  require_error([] { Spec("krum", "reducer").require("f", "F"); }, ErrorKind::Usage,
                {"reducer 'krum': krum needs f=F"});
}

BOOST_AUTO_TEST_CASE(unknown_keys) {
  Spec s("ring:k=2,d=3", "topology");
  (void)s.take_integer("k");
  (void)s.take("rows");
  require_error([&] { s.done(); }, ErrorKind::Usage, {"unknown parameter 'd'", "(parameters: k, rows)"});
  Spec none("complete:k=1", "topology");
  require_error([&] { none.done(); }, ErrorKind::Usage, {"unknown parameter 'k'", "complete takes none"});
}

BOOST_AUTO_TEST_CASE(chains) {
  const auto c = loco::parse_spec_chain("nnm:f=1+krum:f=2,eps=1e+5", "reducer");
  BOOST_TEST(c.size() == 2u);
  BOOST_TEST(c[0].name() == "nnm");
  BOOST_TEST(c[1].name() == "krum");
  BOOST_TEST(c[1].params()[1].second == "1e+5");
  BOOST_TEST(loco::parse_spec_chain("scaled:s=+4", "attack")[0].params()[0].second == "+4");
  BOOST_TEST(loco::parse_spec_chain("median", "reducer").size() == 1u);
  for (const char* bad : {"+median", "nnm:f=1+", "nnm:f=1++median"})
    require_error([&] { loco::parse_spec_chain(bad, "reducer"); }, ErrorKind::Usage, {"empty part around '+'"});
}

BOOST_AUTO_TEST_SUITE_END()
