// Tests of templar's compressor (SparseLoCo's reference, tplr-ai/templar src/tplr/compress/topk.py
// and bits.py) as loco's codec options topk:tile=2d and quant:range=templar, against hand-computed
// cases: the 2-D tiles and their k, vectors that travel whole, the quantizer's bins and table, and
// the byte count of templar's index coding.
#include <boost/test/unit_test.hpp>

#include <tbb/global_control.h>

#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/compress/detail/templar.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace lc = loco::compress;
using loco::ErrorKind;
using loco::Tensor;

namespace {

std::vector<float> floats(const Tensor& t) { return {t.f32().begin(), t.f32().end()}; }
std::vector<std::int64_t> u16s(const Tensor& t) {
  std::vector<std::int64_t> v;
  for (const auto i : t.as<std::uint16_t>()) v.push_back(i);
  return v;
}

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const loco::Error& e) {
    return e.kind();
  }
  BOOST_FAIL("no error");
  return ErrorKind::Internal;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(templar)

BOOST_AUTO_TEST_CASE(spec_words) {
  BOOST_TEST(lc::Codec::parse("topk:k=64,tile=2d+quant:bits=2,range=templar").spec() ==
             "topk:k=64,tile=2d,chunk=64+quant:bits=2,range=templar,sigmas=6");
  BOOST_TEST(lc::Codec::parse("topk:tile=2d").spec() == "topk:k=64,tile=2d,chunk=64");
  // The flat tiles' spec is unchanged.
  BOOST_TEST(lc::Codec::parse("topk:density=0.5,tile=8").spec() == "topk:density=0.5,tile=8");
  for (const char* bad : {"topk:density=0.1,tile=2d", "topk:k=4,chunk=8", "topk:k=4,tile=2d,chunk=0",
                          "topk:k=4,tile=3d", "quant:range=templar,block=64", "quant:range=templar,rounding=stochastic",
                          "quant:range=templar,bits=3", "quant:range=templar,sigmas=0"})
    BOOST_TEST((kind_of([&] { lc::Codec::parse(bad); }) == ErrorKind::Usage), bad);
}

BOOST_AUTO_TEST_CASE(tiles_of_a_small_matrix_hand_computed) {
  // 4 × 6 at chunk 3: tiles of 2 × 3 (the largest divisors of 4 and 6 not above 3), a 2 × 2 grid.
  // k = 3 is clamped to the even 2 per tile (templar's _clamp_topk).
  const std::vector<float> m = {
      1, -9, 2,  /**/ 0,  0,  5,   //
      3, 4,  -8, /**/ 7,  0,  -6,  //
      0, 0,  1,  /**/ -1, 2,  3,   //
      0, 0,  0,  /**/ 4,  -4, 1,   //
  };
  const Tensor x = Tensor::from_floats({4, 6}, m);
  const auto c = lc::Codec::parse("topk:k=3,tile=2d,chunk=3");
  const auto e = c.encode(x, {});
  // Tile (0,0) rows {1,-9,2},{3,4,-8}: -9 at 1 and -8 at 5. Tile (0,1) {0,0,5},{7,0,-6}: 7 at 3, -6 at 5.
  // Tile (1,0) {0,0,1},{0,0,0}: 1 at 2, then the tie among zeros to the lower index, 0.
  // Tile (1,1) {-1,2,3},{4,-4,1}: 4 at 3 and -4 at 4 (ties to the lower index).
  BOOST_TEST(u16s(e.get("indices")) == (std::vector<std::int64_t>{1, 5, 3, 5, 0, 2, 3, 4}),
             boost::test_tools::per_element());
  BOOST_TEST(floats(e.get("values")) == (std::vector<float>{-9, -8, 7, -6, 0, 1, 4, -4}),
             boost::test_tools::per_element());
  const std::vector<float> want = {
      0, -9, 0,  /**/ 0, 0,  0,   //
      0, 0,  -8, /**/ 7, 0,  -6,  //
      0, 0,  1,  /**/ 0, 0,  0,   //
      0, 0,  0,  /**/ 4, -4, 0,   //
  };
  BOOST_TEST(floats(lc::decode(e)) == want, boost::test_tools::per_element());
  // Rank 3 is read as shape[0] × the rest: (4, 2, 3) tiles as 4 × 6.
  const auto e3 = c.encode(Tensor::from_floats({4, 2, 3}, m), {});
  BOOST_TEST(u16s(e3.get("indices")) == u16s(e.get("indices")), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(k_per_tile_is_templars_clamp) {
  BOOST_TEST(lc::detail::templar_tile_k(64, 4096) == 64);
  BOOST_TEST(lc::detail::templar_tile_k(64, 40) == 40);
  BOOST_TEST(lc::detail::templar_tile_k(64, 63) == 62);  // even
  BOOST_TEST(lc::detail::templar_tile_k(1, 10) == 2);    // at least 2
  BOOST_TEST(lc::detail::templar_tile_k(3, 10) == 2);
  BOOST_TEST(lc::detail::templar_tile_k(64, 1) == 1);  // a one-element tile keeps it
  BOOST_TEST(lc::detail::templar_tile_k(64, 0) == 0);
}

BOOST_AUTO_TEST_CASE(short_vectors_travel_whole) {
  const auto c = lc::Codec::parse("topk:k=64,tile=2d");
  for (const std::int64_t n : {1, 40, 64, 128, 97, 768}) {  // 97 is prime: tiles of 1; 768 = 12 tiles of 64
    std::vector<float> v(static_cast<std::size_t>(n));
    loco::fill_normal(v, 0.0f, 1.0f, 3, 1);
    const auto e = c.encode(Tensor::from_floats({n}, v), {});
    BOOST_TEST(e.get("values").numel() == n);
    BOOST_TEST(floats(lc::decode(e)) == v, boost::test_tools::per_element());
  }
  // 63 elements: one tile keeping the even 62; the smallest magnitude is dropped.
  std::vector<float> v(63);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) + 1;
  v[17] = 0.5f;
  auto want = v;
  want[17] = 0;
  BOOST_TEST(floats(lc::decode(c.encode(Tensor::from_floats({63}, v), {}))) == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(quantizer_bins_and_table_hand_computed) {
  // x = 10 + c, c = {-1, 1, -3, 3, 0, 0}: μ = 10, σ = √(20/5) = 2; sigmas = 4, bits = 2: s = 4·2/4 = 2,
  // c/s + 2 = {1.5, 2.5, 0.5, 3.5, 2, 2} → halves to even {2, 2, 0, 4 → 3, 2, 2}.
  // Table of bin means of c: {-3, 0 (empty), 0, 3}; decoded table[q] + μ.
  const auto c = lc::Codec::parse("quant:bits=2,range=templar,sigmas=4");
  const auto e = c.encode(Tensor::from_floats({6}, std::vector<float>{9, 11, 7, 13, 10, 10}), {});
  const auto packed = e.get("packed").as<std::uint8_t>();
  BOOST_TEST(packed.size() == 2u);
  BOOST_TEST(packed[0] == (2u | 2u << 2 | 0u << 4 | 3u << 6));
  BOOST_TEST(packed[1] == (2u | 2u << 2));
  BOOST_TEST(floats(e.get("table")) == (std::vector<float>{-3, 0, 0, 3}), boost::test_tools::per_element());
  BOOST_TEST(floats(e.get("shift")) == std::vector<float>{10}, boost::test_tools::per_element());
  BOOST_TEST(floats(lc::decode(e)) == (std::vector<float>{10, 10, 7, 13, 10, 10}), boost::test_tools::per_element());
  // Default sigmas = 6: x = 5 + {-4, -2, 0, 2, 4}, σ = √10, s = 1.5σ ≈ 4.74; c/s + 2 ≈ {1.16, 1.58, 2,
  // 2.42, 2.84} → {1, 2, 2, 2, 3}; bin means {-4}, {-2, 0, 2} → 0, {4}: decoded {1, 5, 5, 5, 9}.
  const auto d = lc::Codec::parse("quant:bits=2,range=templar");
  BOOST_TEST(floats(lc::decode(d.encode(Tensor::from_floats({5}, std::vector<float>{1, 3, 5, 7, 9}), {}))) ==
                 (std::vector<float>{1, 5, 5, 5, 9}),
             boost::test_tools::per_element());
  // One value: σ is undefined (templar's scale falls back to 1); it decodes exactly.
  BOOST_TEST(
      floats(lc::decode(d.encode(Tensor::from_floats({1}, std::vector<float>{2.5f}), {}))) == std::vector<float>{2.5f},
      boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(index_bytes_hand_computed) {
  // One 64-element row keeping all 64: B = 64 only, κ = round(log2 64) = 6, Rice of 64 is 1 + 1 + 6
  // bits, bitmap 64 bits: 10 + 8 + 64 = 82 bits → 11 bytes; 29 + 16 + 88 = 133 bits → 17 bytes.
  std::vector<std::uint16_t> all(64);
  for (std::uint16_t i = 0; i < 64; ++i) all[i] = i;
  BOOST_TEST(lc::detail::templar_index_bytes(all, 1, 64, 64) == 17);
  // C = 4096, k = 64 in sub-chunk 0: B = 64 (κ = 0): Rice 64 + 64 bits, bitmap 64: 202 bits; B = 128
  // (κ = 1): Rice 32 + 2·32, bitmap 128: 234. 202 → 26 bytes; 29 + 16 + 208 = 253 bits → 32 bytes.
  BOOST_TEST(lc::detail::templar_index_bytes(all, 1, 64, 4096) == 32);
  // One index per 64-element sub-chunk: B = 64: Rice 128, local 6·64: 522 bits (bitmap 4234); B = 128:
  // 10 + 96 + 448 = 554. 522 → 66 bytes; 29 + 16 + 528 = 573 bits → 72 bytes.
  std::vector<std::uint16_t> spread(64);
  for (std::uint16_t i = 0; i < 64; ++i) spread[i] = static_cast<std::uint16_t>(i * 64);
  BOOST_TEST(lc::detail::templar_index_bytes(spread, 1, 64, 4096) == 72);
  // Both rows in one payload: 29 + (16 + 208) + (16 + 528) = 797 bits → 100 bytes.
  std::vector<std::uint16_t> two(all);
  two.insert(two.end(), spread.begin(), spread.end());
  BOOST_TEST(lc::detail::templar_index_bytes(two, 2, 64, 4096) == 100);
  BOOST_TEST(lc::detail::templar_index_bytes(all, 1, 64, 8192) == -1);
}

BOOST_AUTO_TEST_CASE(templar_bytes_of_an_encoding) {
  // A 64 × 128 matrix: two 64 × 64 tiles; the first's 64 largest in its first row (local 0..63), the
  // second's one per row (local 64·r): the rows above, 100 index bytes.
  std::vector<float> m(64 * 128, 0.001f);
  for (int j = 0; j < 64; ++j) m[static_cast<std::size_t>(j)] = 1.0f + static_cast<float>(j);
  for (int r = 0; r < 64; ++r) m[static_cast<std::size_t>(r * 128 + 64)] = -2.0f - static_cast<float>(r);
  const Tensor x = Tensor::from_floats({64, 128}, m);
  const auto a = lc::Codec::parse("topk:k=64,tile=2d").encode(x, {});
  BOOST_TEST(*a.attrs.get_int("templar_bytes") == 100 + 128 * 4);
  const auto b = lc::Codec::parse("topk:k=64,tile=2d+quant:bits=2,range=templar").encode(x, {});
  BOOST_TEST(*b.attrs.get_int("templar_bytes") == 100 + 128 + 4 * 4 + 4);
  // loco's own payload: uint16 indices, 2-bit codes, the table and the shift.
  BOOST_TEST(b.payload_bytes() == 128 * 2 + 32 + 16 + 4);
  BOOST_TEST(!lc::Codec::parse("topk:k=64,tile=4096").encode(x, {}).attrs.contains("templar_bytes"));
}

BOOST_AUTO_TEST_CASE(malformed_tiles_are_bad_input) {
  const auto c = lc::Codec::parse("topk:k=2,tile=2d,chunk=2");
  auto e = c.encode(Tensor::from_floats({2, 2}, std::vector<float>{1, 2, 3, 4}), {});
  for (auto& [name, t] : e.datasets)
    if (name == "indices") t.as<std::uint16_t>()[1] = 4;  // past the 4-element tile
  BOOST_TEST((kind_of([&] { lc::decode(e); }) == ErrorKind::BadInput));
  for (auto& [name, t] : e.datasets)
    if (name == "indices") t.as<std::uint16_t>()[1] = t.as<std::uint16_t>()[0];  // repeated
  BOOST_TEST((kind_of([&] { lc::decode(e); }) == ErrorKind::BadInput));
}

BOOST_AUTO_TEST_CASE(identical_bytes_at_any_thread_count) {
  std::vector<float> v(192 * 320);
  loco::fill_normal(v, 0.0f, 1.0f, 5, 2);
  const auto c = lc::Codec::parse("topk:k=64,tile=2d+quant:bits=2,range=templar");
  const Tensor x = Tensor::from_floats({192, 320}, v);
  std::vector<lc::Encoded> runs;
  for (int threads : {1, 2}) {
    tbb::global_control g(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
    runs.push_back(c.encode(x, {}));
  }
  for (std::size_t i = 0; i < runs[0].datasets.size(); ++i) {
    const auto a = runs[0].datasets[i].second.bytes(), b = runs[1].datasets[i].second.bytes();
    BOOST_TEST(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  }
}

BOOST_AUTO_TEST_SUITE_END()
