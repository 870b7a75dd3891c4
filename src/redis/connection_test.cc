#include "redis/connection.h"

#include <gtest/gtest.h>

#include "redis_test.h"

using namespace celeriac;

class ConnectionTest : public test_support::RedisTest {
};

TEST_F(ConnectionTest, CommandsAreBinarySafe) {
  redis::Connection c(redis::Url::parse(server->url(2)));
  std::string value("a\0b\x06\x16", 5);
  c.command({"SET", "k", value}).ok();
  EXPECT_EQ(c.command({"GET", "k"}).str, value);
  // The db number of the URL was selected: db 0 does not see the key.
  redis::Connection c0(redis::Url::parse(server->url(0)));
  EXPECT_TRUE(c0.command({"GET", "k"}).is_nil());
}

TEST_F(ConnectionTest, PipelineAndErrors) {
  redis::Connection c(redis::Url::parse(server->url()));
  auto replies = c.pipeline({{"DEL", "l"}, {"RPUSH", "l", "x", "y"}, {"LRANGE", "l", "0", "-1"},
                             {"INCR", "l"}});
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[1].integer, 2);
  ASSERT_EQ(replies[2].elements.size(), 2u);
  EXPECT_EQ(replies[2].elements[1].str, "y");
  EXPECT_TRUE(replies[3].is_error());
  EXPECT_THROW(replies[3].ok(), redis::ReplyError);
}

TEST_F(ConnectionTest, ScriptReloadsAfterFlush) {
  redis::Connection c(redis::Url::parse(server->url()));
  redis::Script s("return ARGV[1] .. KEYS[1]");
  EXPECT_EQ(s.run(c, {"k"}, {"v"}).str, "vk");
  c.command({"SCRIPT", "FLUSH"}).ok();
  EXPECT_EQ(s.run(c, {"k"}, {"w"}).str, "wk");
}

TEST_F(ConnectionTest, PubSubReadTimesOutWithoutBreakingTheConnection) {
  redis::Connection sub(redis::Url::parse(server->url()));
  sub.append({"SUBSCRIBE", "chan"});
  auto ack = sub.read_reply(std::chrono::milliseconds(1000));
  ASSERT_TRUE(ack);
  EXPECT_FALSE(sub.read_reply(std::chrono::milliseconds(50)).has_value());
  redis::Connection pub(redis::Url::parse(server->url()));
  pub.command({"PUBLISH", "chan", "hello"}).ok();
  auto msg = sub.read_reply(std::chrono::milliseconds(1000));
  ASSERT_TRUE(msg);
  ASSERT_EQ(msg->elements.size(), 3u);
  EXPECT_EQ(msg->elements[2].str, "hello");
}

TEST_F(ConnectionTest, WrongPasswordIsAClearError) {
  redis::Connection admin(redis::Url::parse(server->url()));
  admin.command({"CONFIG", "SET", "requirepass", "right"}).ok();
  EXPECT_THROW(redis::Connection(redis::Url::parse("redis://:wrong@127.0.0.1:" +
                                                   std::to_string(server->port()) + "/0")),
               redis::ConnectionError);
  redis::Connection ok(redis::Url::parse("redis://:right@127.0.0.1:" +
                                         std::to_string(server->port()) + "/0"));
  ok.command({"CONFIG", "SET", "requirepass", ""}).ok();
}

TEST(Connection, RefusedIsConnectionError) {
  EXPECT_THROW(redis::Connection(redis::Url::parse("redis://127.0.0.1:" +
                                                   std::to_string(test_support::free_port()) + "/0")),
               redis::ConnectionError);
}
