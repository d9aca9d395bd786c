// Tests of XXH64 against the xxHash project's published sanity vectors, of streaming in any
// chunking, and of the tensor and tensor-set checksums built on it.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "loco/core/checksum.hpp"

namespace {

using loco::DType;
using loco::Tensor;

constexpr std::uint64_t kPrime32 = 2654435761u;
constexpr std::uint64_t kPrime64 = 11400714785074694797ull;

// The test buffer of xxHash's current sanity check: a 64-bit generator starting at PRIME32,
// multiplied by PRIME64 after each byte, each byte its top 8 bits.
std::vector<std::byte> sanity_buffer(std::size_t n) {
  std::vector<std::byte> b(n);
  std::uint64_t gen = kPrime32;
  for (auto& x : b) {
    x = static_cast<std::byte>(gen >> 56);
    gen *= kPrime64;
  }
  return b;
}

// The test buffer of xxHash's earlier sanity check (101 bytes): a 32-bit generator starting at
// PRIME32, squared after each byte, each byte its top 8 bits.
std::vector<std::byte> legacy_sanity_buffer(std::size_t n) {
  std::vector<std::byte> b(n);
  std::uint32_t gen = static_cast<std::uint32_t>(kPrime32);
  for (auto& x : b) {
    x = static_cast<std::byte>(gen >> 24);
    gen *= gen;
  }
  return b;
}

struct Vector {
  std::size_t len;
  std::uint64_t seed;
  std::uint64_t digest;
};

// Published XXH64 results: lengths 0 to 222 cross the 32-byte stripes and the 8-, 4- and 1-byte tails.
constexpr Vector kVectors[] = {{0, 0, 0xEF46DB3751D8E999ull},         {0, kPrime32, 0xAC75FDA2929B17EFull},
                               {1, 0, 0xE934A84ADB052768ull},         {1, kPrime32, 0x5014607643A9B4C3ull},
                               {4, 0, 0x9136A0DCA57457EEull},         {14, 0, 0x8282DCC4994E35C8ull},
                               {14, kPrime32, 0xC3BD6BF63DEB6DF0ull}, {222, 0, 0xB641AE8CB691C174ull},
                               {222, kPrime32, 0x20CB8AB7AE10C14Aull}};
constexpr Vector kLegacyVectors[] = {{1, 0, 0x4FCE394CC88952D8ull},   {1, kPrime32, 0x739840CB819FA723ull},
                                     {14, 0, 0xCFFA8DB881BC3A3Dull},  {14, kPrime32, 0x5B9611585EFCC9CBull},
                                     {101, 0, 0x0EAB543384F878ADull}, {101, kPrime32, 0xCAA65939306F1E21ull}};

// The digest of data fed in pieces whose lengths come from gen (zero-length pieces included).
std::uint64_t chunked(std::span<const std::byte> data, std::uint64_t seed, std::mt19937_64& gen,
                      std::size_t max_piece) {
  loco::Xxh64 h(seed);
  std::size_t pos = 0;
  while (pos < data.size()) {
    const std::size_t piece = std::min<std::size_t>(gen() % (max_piece + 1), data.size() - pos);
    h.update(data.subspan(pos, piece));
    pos += piece;
  }
  h.update(data.subspan(pos, 0));
  return h.digest();
}

template <typename T>
std::span<const std::byte> as_bytes_of(const T& v) {
  return std::as_bytes(std::span(&v, 1));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(checksum)

BOOST_AUTO_TEST_CASE(xxh64_published_vectors) {
  const auto buf = sanity_buffer(222), legacy = legacy_sanity_buffer(101);
  std::mt19937_64 gen(5);
  for (const auto& [vectors, data] :
       {std::pair{std::span<const Vector>(kVectors), std::span<const std::byte>(buf)},
        std::pair{std::span<const Vector>(kLegacyVectors), std::span<const std::byte>(legacy)}}) {
    for (const Vector& v : vectors) {
      BOOST_TEST_CONTEXT("length " << v.len << ", seed " << v.seed) {
        const auto input = data.first(v.len);
        BOOST_TEST(loco::xxh64(input, v.seed) == v.digest);
        loco::Xxh64 bytewise(v.seed);
        for (std::size_t i = 0; i < v.len; ++i) bytewise.update(input.subspan(i, 1));
        BOOST_TEST(bytewise.digest() == v.digest);
        for (int trial = 0; trial < 20; ++trial) BOOST_TEST(chunked(input, v.seed, gen, 40) == v.digest);
      }
    }
  }
  BOOST_TEST(loco::Xxh64().digest() == 0xEF46DB3751D8E999ull);
  BOOST_TEST(loco::xxh64({}) == 0xEF46DB3751D8E999ull);
}

BOOST_AUTO_TEST_CASE(streaming_equals_one_shot) {
  std::mt19937_64 gen(11);
  std::vector<std::byte> data(300);
  for (auto& b : data) b = static_cast<std::byte>(gen());
  for (std::size_t len = 0; len <= data.size(); ++len) {
    const auto input = std::span<const std::byte>(data).first(len);
    const std::uint64_t seed = gen();
    const std::uint64_t one_shot = loco::xxh64(input, seed);
    // Splits at every position, then random chunkings of small and stripe-sized pieces.
    for (std::size_t cut = 0; cut <= len; cut += 1 + len / 16) {
      loco::Xxh64 h(seed);
      h.update(input.first(cut));
      h.update(input.subspan(cut));
      BOOST_TEST_REQUIRE(h.digest() == one_shot, "length " << len << " cut " << cut);
    }
    for (const std::size_t max_piece : {3, 31, 33, 70})
      BOOST_TEST_REQUIRE(chunked(input, seed, gen, max_piece) == one_shot);
  }
  // digest() does not disturb the state: hashing on after a digest continues the stream.
  loco::Xxh64 h(3);
  const auto all = std::span<const std::byte>(data);
  h.update(all.first(100));
  (void)h.digest();
  h.update(all.subspan(100));
  BOOST_TEST(h.digest() == loco::xxh64(all, 3));
  // The string_view overload hashes the characters.
  const std::string text = "Nobody inspects the spammish repetition";
  loco::Xxh64 s;
  s.update(std::string_view(text));
  BOOST_TEST(s.digest() == loco::xxh64(std::as_bytes(std::span(text.data(), text.size()))));
}

// The tensor preimage: dtype name, a NUL, the rank and each dimension as little-endian uint64,
// then the element bytes. Pinned because checksums are stored in files (base_checksum).
BOOST_AUTO_TEST_CASE(tensor_checksum_preimage) {
  const std::vector<float> v = {1.0f, -2.0f, 0.5f, 3.0f, 0.0f, 7.25f};
  const Tensor t = Tensor::from_floats({2, 3}, v);
  std::vector<std::byte> pre;
  const std::string name = "float32";
  for (char c : name) pre.push_back(static_cast<std::byte>(c));
  pre.push_back(std::byte{0});
  for (std::uint64_t x : {2ull, 2ull, 3ull})
    for (int i = 0; i < 8; ++i) pre.push_back(static_cast<std::byte>(x >> (8 * i)));
  const auto data = std::as_bytes(std::span(v));
  pre.insert(pre.end(), data.begin(), data.end());
  BOOST_TEST(loco::tensor_checksum(t) == loco::xxh64(pre));

  // The hasher streams: feeding the bytes in pieces gives the same checksum.
  loco::Xxh64 h = loco::tensor_hasher(DType::F32, {2, 3});
  for (std::size_t i = 0; i < data.size(); i += 5) h.update(data.subspan(i, std::min<std::size_t>(5, data.size() - i)));
  BOOST_TEST(h.digest() == loco::tensor_checksum(t));
}

BOOST_AUTO_TEST_CASE(tensor_checksum_sees_shape_and_dtype) {
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  const Tensor t = Tensor::from_floats({2, 3}, v);
  const std::uint64_t base = loco::tensor_checksum(t);
  BOOST_TEST(loco::tensor_checksum(t.clone()) == base);  // equal content, equal checksum

  // Same bytes, other shapes.
  for (const loco::Shape& s :
       {loco::Shape{3, 2}, loco::Shape{6}, loco::Shape{1, 6}, loco::Shape{6, 1}, loco::Shape{1, 2, 3}}) {
    Tensor r = t.clone();
    r.reshape(s);
    BOOST_TEST(loco::tensor_checksum(r) != base, "shape " << loco::shape_string(s));
  }
  // Same bytes, other dtypes of the same width.
  Tensor as_int({2, 3}, DType::I32), as_uint({2, 3}, DType::U32);
  std::memcpy(as_int.bytes().data(), t.bytes().data(), t.nbytes());
  std::memcpy(as_uint.bytes().data(), t.bytes().data(), t.nbytes());
  BOOST_TEST(loco::tensor_checksum(as_int) != base);
  BOOST_TEST(loco::tensor_checksum(as_uint) != base);
  BOOST_TEST(loco::tensor_checksum(as_int) != loco::tensor_checksum(as_uint));
  std::vector<std::uint64_t> sixteen;
  for (DType d : {DType::F16, DType::BF16, DType::I16, DType::U16})
    sixteen.push_back(loco::tensor_checksum(Tensor({4}, d)));
  std::sort(sixteen.begin(), sixteen.end());
  BOOST_TEST((std::adjacent_find(sixteen.begin(), sixteen.end()) == sixteen.end()));
  // One flipped bit.
  Tensor flipped = t.clone();
  flipped.bytes()[13] ^= std::byte{0x10};
  BOOST_TEST(loco::tensor_checksum(flipped) != base);
  // Empty tensors of different shapes differ too.
  BOOST_TEST(loco::tensor_checksum(Tensor({0, 3})) != loco::tensor_checksum(Tensor({3, 0})));
}

BOOST_AUTO_TEST_CASE(set_checksum_ignores_order) {
  const std::vector<std::pair<std::string, std::uint64_t>> items = {
      {"layer.0.weight", 0x1111}, {"layer.0.bias", 0x2222}, {"emb", 0x3333}, {"head", 0x4444}};
  std::vector<std::size_t> order = {0, 1, 2, 3};
  std::uint64_t first = 0;
  int permutations = 0;
  do {
    loco::SetChecksum s;
    for (std::size_t i : order) s.add(items[i].first, items[i].second);
    if (permutations++ == 0) first = s.digest();
    BOOST_TEST_REQUIRE(s.digest() == first);
  } while (std::next_permutation(order.begin(), order.end()));
  BOOST_TEST(permutations == 24);

  auto digest_of = [](const std::vector<std::pair<std::string, std::uint64_t>>& v) {
    loco::SetChecksum s;
    for (const auto& [n, c] : v) s.add(n, c);
    return s.digest();
  };
  auto changed = items;
  changed[2].second ^= 1;
  BOOST_TEST(digest_of(changed) != first);
  auto renamed = items;
  renamed[3].first = "head2";
  BOOST_TEST(digest_of(renamed) != first);
  auto swapped = items;  // the same checksums under each other's names
  std::swap(swapped[0].second, swapped[1].second);
  BOOST_TEST(digest_of(swapped) != first);
  auto fewer = items;
  fewer.pop_back();
  BOOST_TEST(digest_of(fewer) != first);
  // Name boundaries matter: ("ab", c) is not ("a", …) followed by "b".
  BOOST_TEST(digest_of({{"ab", 1}, {"c", 2}}) != digest_of({{"a", 1}, {"bc", 2}}));
  BOOST_TEST(loco::SetChecksum().digest() == loco::SetChecksum().digest());
}

BOOST_AUTO_TEST_CASE(format_checksum_form) {
  BOOST_TEST(loco::format_checksum(0x0123456789abcdefull) == "xxh64:0123456789abcdef");
  BOOST_TEST(loco::format_checksum(0) == "xxh64:0000000000000000");
  BOOST_TEST(loco::format_checksum(~std::uint64_t{0}) == "xxh64:ffffffffffffffff");
  BOOST_TEST(loco::format_checksum(0xEF46DB3751D8E999ull) == "xxh64:ef46db3751d8e999");
  BOOST_TEST(loco::format_checksum(42).size() == 22u);
}

BOOST_AUTO_TEST_SUITE_END()
