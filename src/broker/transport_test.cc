#include "broker/transport.h"

#include <gtest/gtest.h>

#include <thread>
#include <nlohmann/json.hpp>

#include "celery/codec.h"
#include "celery/message.h"
#include "redis_test.h"

using namespace celeriac;
using nlohmann::json;

class TransportTest : public test_support::RedisTest {
 protected:
  std::string message(const std::string& queue, int priority = 0) {
    celery::TaskMessage m;
    m.id = celery::uuid4();
    m.task = "tasks.add";
    m.args = celery::Json::array({1, 2});
    m.routing_key = queue;
    m.priority = priority;
    return celery::encode_task_message(m);
  }
};

TEST(Keys, PriorityStepsAndOrder) {
  EXPECT_EQ(broker::priority_key("celery", 0), "celery");
  EXPECT_EQ(broker::priority_key("celery", 2), "celery");
  EXPECT_EQ(broker::priority_key("celery", 5), std::string("celery\x06\x16") + "3");
  EXPECT_EQ(broker::priority_key("celery", 9), std::string("celery\x06\x16") + "9");
  EXPECT_EQ(broker::queue_of_key(std::string("a\x06\x16") + "6"), "a");
  auto order = broker::consume_order({"a", "b"});
  ASSERT_EQ(order.size(), 8u);
  EXPECT_EQ(order[0], "a");
  EXPECT_EQ(order[1], "b");
  EXPECT_EQ(order[2], std::string("a\x06\x16") + "3");
  EXPECT_EQ(broker::fanout_channel(0, "celeryev", "task.multi"), "/0.celeryev/task.multi");
  EXPECT_EQ(broker::fanout_channel(3, "celery.pidbox", ""), "/3.celery.pidbox");
}

TEST_F(TransportTest, ReserveRecordsUnackedAtomicallyAndAckRemoves) {
  broker::Transport t(redis::Url::parse(server->url()));
  std::string m1 = message("celery"), m2 = message("celery");
  t.publish("celery", 0, m1);
  t.publish("celery", 0, m2);
  auto r = t.reserve(broker::consume_order({"celery"}), 10);
  ASSERT_EQ(r.deliveries.size(), 2u);
  EXPECT_EQ(r.deliveries[0].envelope, m1);  // FIFO
  EXPECT_EQ(r.deliveries[0].queue, "celery");
  auto& c = t.connection();
  EXPECT_EQ(c.command({"LLEN", "celery"}).integer, 0);
  EXPECT_EQ(c.command({"HLEN", "unacked"}).integer, 2);
  EXPECT_EQ(c.command({"ZCARD", "unacked_index"}).integer, 2);
  // The hash value is kombu's [envelope, exchange, routing_key], readable by a Python restorer.
  std::string tag = celery::envelope_delivery_tag(m1);
  json held = json::parse(c.command({"HGET", "unacked", tag}).str);
  EXPECT_EQ(held[0], json::parse(m1));
  EXPECT_EQ(held[1], "");
  EXPECT_EQ(held[2], "celery");
  t.ack({tag, celery::envelope_delivery_tag(m2)});
  EXPECT_EQ(c.command({"HLEN", "unacked"}).integer, 0);
  EXPECT_EQ(c.command({"ZCARD", "unacked_index"}).integer, 0);
}

TEST_F(TransportTest, ReserveHonoursMaxCountAndPriority) {
  broker::Transport t(redis::Url::parse(server->url()));
  std::string low = message("celery", 9), high = message("celery", 0);
  t.publish("celery", 9, low);
  t.publish("celery", 0, high);
  auto r = t.reserve(broker::consume_order({"celery"}), 1);
  ASSERT_EQ(r.deliveries.size(), 1u);
  EXPECT_EQ(r.deliveries[0].envelope, high);
  r = t.reserve(broker::consume_order({"celery"}), 5);
  ASSERT_EQ(r.deliveries.size(), 1u);
  EXPECT_EQ(r.deliveries[0].envelope, low);
  EXPECT_TRUE(t.reserve(broker::consume_order({"celery"}), 5).deliveries.empty());
}

TEST_F(TransportTest, UntrackableMessagesGoToTheDeadLetterList) {
  broker::TransportOptions opts;
  opts.worker_name = "w@test";
  broker::Transport t(redis::Url::parse(server->url()), opts);
  t.publish("celery", 0, "{not json");
  t.publish("celery", 0, R"({"body": "x", "properties": {}})");
  std::string good = message("celery");
  t.publish("celery", 0, good);
  auto r = t.reserve(broker::consume_order({"celery"}), 10);
  ASSERT_EQ(r.dead_letters.size(), 2u);
  EXPECT_EQ(r.dead_letters[0].reason, "message is not valid JSON");
  ASSERT_EQ(r.deliveries.size(), 1u);
  auto& c = t.connection();
  auto entries = c.command({"LRANGE", "celeriac.deadletter", "0", "-1"});
  ASSERT_EQ(entries.elements.size(), 2u);
  json first = json::parse(entries.elements[1].str);  // LPUSH: oldest last
  EXPECT_EQ(first["message"], "{not json");
  EXPECT_EQ(first["queue"], "celery");
  EXPECT_EQ(first["worker"], "w@test");
  // Dead-lettering a delivered message acks it at the same time.
  t.dead_letter("celery", good, celery::envelope_delivery_tag(good), "bad body");
  EXPECT_EQ(c.command({"HLEN", "unacked"}).integer, 0);
  EXPECT_EQ(c.command({"LLEN", "celeriac.deadletter"}).integer, 3);
}

TEST_F(TransportTest, RequeueRestoresAsKombuDoes) {
  broker::Transport t(redis::Url::parse(server->url()));
  std::string m = message("celery", 6);
  t.publish("celery", 6, m);
  auto r = t.reserve(broker::consume_order({"celery"}), 1);
  ASSERT_EQ(r.deliveries.size(), 1u);
  std::string tag = celery::envelope_delivery_tag(m);
  EXPECT_TRUE(t.requeue(tag));
  EXPECT_FALSE(t.requeue(tag));  // no longer held
  auto& c = t.connection();
  EXPECT_EQ(c.command({"HLEN", "unacked"}).integer, 0);
  auto back = c.command({"RPOP", broker::priority_key("celery", 6)});
  ASSERT_FALSE(back.is_nil());
  json env = json::parse(back.str);
  EXPECT_EQ(env["headers"]["redelivered"], true);
  EXPECT_EQ(env["properties"]["delivery_info"]["redelivered"], true);
  EXPECT_EQ(env["properties"]["delivery_tag"], tag);  // kombu keeps the tag
}

TEST_F(TransportTest, DirectExchangeRoutesThroughBindings) {
  broker::Transport t(redis::Url::parse(server->url()));
  t.declare_queue("q1");
  EXPECT_EQ(t.publish_direct("q1", "q1", "x"), 1);
  EXPECT_EQ(t.publish_direct("q1", "other", "y"), 0);  // unroutable: dropped, as kombu
  EXPECT_EQ(t.connection().command({"LLEN", "q1"}).integer, 1);
}

TEST_F(TransportTest, BlockingWaitWakesOnPushAndReserveAdoptsTheStagedMessage) {
  broker::TransportOptions opts;
  opts.worker_name = "w@stage";
  broker::Transport t(redis::Url::parse(server->url()), opts);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(t.wait("celery", 0.05));  // nothing: times out
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(40));
  std::string m = message("other");
  std::thread pusher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    broker::Transport p(redis::Url::parse(server->url()));
    p.publish("celery", 0, m);
  });
  EXPECT_TRUE(t.wait("celery", 2.0));
  pusher.join();
  auto& c = t.connection();
  // Staged, not lost: the message is in the staging list until reserve records it.
  EXPECT_EQ(c.command({"LLEN", "celeriac.staging.w@stage"}).integer, 1);
  auto r = t.reserve(broker::consume_order({"celery"}), 10);
  ASSERT_EQ(r.deliveries.size(), 1u);
  EXPECT_EQ(r.deliveries[0].envelope, m);
  EXPECT_EQ(r.deliveries[0].queue, "other");  // from its routing key
  EXPECT_EQ(c.command({"LLEN", "celeriac.staging.w@stage"}).integer, 0);
  EXPECT_EQ(c.command({"HLEN", "unacked"}).integer, 1);
}

TEST_F(TransportTest, RecoveringADeadWorkerCountsOnlyTheMessagesItWasRunning) {
  broker::TransportOptions opts;
  opts.worker_name = "w1@test";
  broker::Transport t(redis::Url::parse(server->url()), opts);
  std::string running = message("celery"), prefetched = message("celery");
  t.publish("celery", 0, running);
  t.publish("celery", 0, prefetched);
  ASSERT_EQ(t.reserve(broker::consume_order({"celery"}), 10).deliveries.size(), 2u);
  auto& c = t.connection();
  c.command({"HSET", broker::Transport::running_key("w1@test"), "0",
             celery::envelope_delivery_tag(running)}).ok();

  broker::Transport restorer(redis::Url::parse(server->url()));
  EXPECT_EQ(restorer.recover_worker("w1@test"), 2);
  EXPECT_EQ(c.command({"HLEN", "unacked"}).integer, 0);
  EXPECT_EQ(c.command({"EXISTS", broker::Transport::running_key("w1@test")}).integer, 0);
  auto back = t.reserve(broker::consume_order({"celery"}), 10).deliveries;
  ASSERT_EQ(back.size(), 2u);
  int counted = 0;
  for (const auto& d : back) {
    auto m = celery::decode_task_message(d.envelope);
    EXPECT_TRUE(m.redelivered);
    if (m.delivery_tag == celery::envelope_delivery_tag(running)) {
      EXPECT_EQ(m.deliveries, 1);
      ++counted;
    } else {
      EXPECT_EQ(m.deliveries, 0);
    }
  }
  EXPECT_EQ(counted, 1);
  // The count survives the next crash and goes up again.
  std::string tag = celery::envelope_delivery_tag(running);
  c.command({"HSET", broker::Transport::running_key("w1@test"), "3", "x " + tag}).ok();
  EXPECT_EQ(restorer.recover_worker("w1@test"), 2);
  for (const auto& d : t.reserve(broker::consume_order({"celery"}), 10).deliveries) {
    auto m = celery::decode_task_message(d.envelope);
    EXPECT_EQ(m.deliveries, m.delivery_tag == tag ? 2 : 0);
  }
}

// A live worker's reservations it never heard of (the reply was lost) go back; what it knows
// stays held, and a tag left in the held set with no unacked entry is dropped.
TEST_F(TransportTest, RequeueUnknownHeldReturnsOnlyWhatTheWorkerDoesNotKnow) {
  broker::TransportOptions opts;
  opts.worker_name = "w2@test";
  broker::Transport t(redis::Url::parse(server->url()), opts);
  const std::string known = message("celery"), lost = message("celery");
  t.publish("celery", 0, known);
  t.publish("celery", 0, lost);
  ASSERT_EQ(t.reserve(broker::consume_order({"celery"}), 10).deliveries.size(), 2u);
  auto& c = t.connection();
  c.command({"SADD", t.held_key(), "stale-tag"}).ok();
  const std::string known_tag = celery::envelope_delivery_tag(known);
  EXPECT_EQ(t.requeue_unknown_held({known_tag}), 1);
  const auto held = c.command({"SMEMBERS", t.held_key()});
  ASSERT_EQ(held.elements.size(), 1u);
  EXPECT_EQ(held.elements[0].str, known_tag);
  EXPECT_EQ(c.command({"HLEN", "unacked"}).integer, 1);
  const auto back = t.reserve(broker::consume_order({"celery"}), 10).deliveries;
  ASSERT_EQ(back.size(), 1u);
  const auto m = celery::decode_task_message(back[0].envelope);
  EXPECT_EQ(m.delivery_tag, celery::envelope_delivery_tag(lost));
  EXPECT_TRUE(m.redelivered);
  EXPECT_EQ(m.deliveries, 0);  // it never ran
}

TEST_F(TransportTest, RestoreVisibleSparesLiveHoldersAndHonoursKombusMutex) {
  broker::Transport t(redis::Url::parse(server->url()));
  std::string mine = message("celery"), orphan = message("celery");
  t.publish("celery", 0, mine);
  t.publish("celery", 0, orphan);
  ASSERT_EQ(t.reserve(broker::consume_order({"celery"}), 10).deliveries.size(), 2u);
  auto& c = t.connection();
  // Held by another restorer (a Python worker in restore_visible): nothing happens.
  c.command({"SET", "unacked_mutex", "someone", "EX", "300"}).ok();
  EXPECT_EQ(t.restore_visible(0, {}), 0);
  c.command({"DEL", "unacked_mutex"}).ok();
  // Not yet past the visibility timeout: nothing happens either.
  EXPECT_EQ(t.restore_visible(3600, {}), 0);
  EXPECT_EQ(t.restore_visible(0, {celery::envelope_delivery_tag(mine)}), 1);
  EXPECT_EQ(c.command({"LLEN", "celery"}).integer, 1);
  EXPECT_EQ(c.command({"HLEN", "unacked"}).integer, 1);
  EXPECT_TRUE(c.command({"HEXISTS", "unacked", celery::envelope_delivery_tag(mine)}).integer);
  EXPECT_EQ(c.command({"EXISTS", "unacked_mutex"}).integer, 0);
}
