#include "celery/codec.h"

#include <gtest/gtest.h>

using namespace celeriac::celery;

TEST(Base64, RoundTripAndErrors) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x06\x16", 4)}) {
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  }
  EXPECT_EQ(base64_encode("[[4, 6], {}]"), "W1s0LCA2XSwge31d");
  EXPECT_THROW(base64_decode("abc"), Base64Error);
  EXPECT_THROW(base64_decode("ab!d"), Base64Error);
}

TEST(Uuid4, FormatAndVersion) {
  std::string a = uuid4(), b = uuid4();
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '4');
  EXPECT_TRUE(a[19] == '8' || a[19] == '9' || a[19] == 'a' || a[19] == 'b');
}

TEST(Iso8601, FormatsAsCeleryAndParsesEveryVariant) {
  EXPECT_EQ(format_iso8601_utc(1893553445.678901), "2030-01-02T03:04:05.678901+00:00");
  EXPECT_EQ(format_iso8601_utc(1893553445.0), "2030-01-02T03:04:05+00:00");
  EXPECT_EQ(format_iso8601_naive_utc(1893553445.5), "2030-01-02T03:04:05.500000");
  EXPECT_NEAR(*parse_iso8601("2030-01-02T03:04:05.678901+00:00"), 1893553445.678901, 1e-6);
  EXPECT_NEAR(*parse_iso8601("2030-01-02T03:04:05Z"), 1893553445.0, 1e-9);
  EXPECT_NEAR(*parse_iso8601("2030-01-02T03:04:05"), 1893553445.0, 1e-9);
  EXPECT_NEAR(*parse_iso8601("2030-01-02T05:04:05+02:00"), 1893553445.0, 1e-9);
  EXPECT_NEAR(*parse_iso8601("2030-01-02T01:04:05-0200"), 1893553445.0, 1e-9);
  EXPECT_FALSE(parse_iso8601("tomorrow"));
  EXPECT_FALSE(parse_iso8601("2030-13-02T03:04:05"));
  EXPECT_FALSE(parse_iso8601("2030-01-02T03:04:05+xx"));
}

TEST(PythonRepr, MatchesPython) {
  EXPECT_EQ(python_tuple_repr(Json::array({4, 6})), "(4, 6)");
  EXPECT_EQ(python_tuple_repr(Json::array({4})), "(4,)");
  EXPECT_EQ(python_tuple_repr(Json::array()), "()");
  EXPECT_EQ(python_repr(Json::parse(R"({"x": 1, "y": [true, null, 2.0, "it's"]})")),
            R"({'x': 1, 'y': [True, None, 2.0, "it's"]})");
  EXPECT_EQ(python_repr(Json("a'b\"c\n")), R"('a\'b"c\n')");
}

TEST(KombuTypes, AreUnwrapped) {
  Json v = Json::parse(
      R"([{"__type__": "datetime", "__value__": "2030-01-02T03:04:05"}, {"a": {"__type__": "uuid", "__value__": {"hex": "ab"}}}, {"__type__": "x", "__value__": 1, "more": 2}])");
  unwrap_kombu_types(v);
  EXPECT_EQ(v[0], "2030-01-02T03:04:05");
  EXPECT_EQ(v[1]["a"], "ab");
  EXPECT_TRUE(v[2].is_object());  // not exactly the two keys: left alone
}
