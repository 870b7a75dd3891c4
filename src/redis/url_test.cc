#include "redis/url.h"

#include <gtest/gtest.h>

using celeriac::redis::Url;

TEST(Url, DefaultsAndDb) {
  Url u = Url::parse("redis://localhost/3");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 6379);
  EXPECT_EQ(u.db, 3);
  EXPECT_TRUE(u.password.empty());
  EXPECT_EQ(Url::parse("redis://").host, "127.0.0.1");
}

TEST(Url, PasswordUserAndRedaction) {
  Url u = Url::parse("redis://user:s%40cret@10.0.0.1:6390/1");
  EXPECT_EQ(u.username, "user");
  EXPECT_EQ(u.password, "s@cret");
  EXPECT_EQ(u.port, 6390);
  EXPECT_EQ(u.db, 1);
  EXPECT_EQ(u.redacted().find("cret"), std::string::npos);
  Url bare = Url::parse("redis://:pw@h:1/0");
  EXPECT_EQ(bare.password, "pw");
  EXPECT_TRUE(bare.username.empty());
}

TEST(Url, UnixSocketWithDbQuery) {
  Url u = Url::parse("unix:///run/redis.sock?db=2");
  EXPECT_EQ(u.unix_socket, "/run/redis.sock");
  EXPECT_EQ(u.db, 2);
}

TEST(Url, RejectsGarbage) {
  EXPECT_THROW(Url::parse("http://x"), std::invalid_argument);
  EXPECT_THROW(Url::parse("redis://h:notaport/0"), std::invalid_argument);
  EXPECT_THROW(Url::parse("redis://h:6379/x"), std::invalid_argument);
  try {
    Url::parse("redis://:topsecret@h:99999/0");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("topsecret"), std::string::npos);
  }
}
