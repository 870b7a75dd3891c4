#include "backend/result_backend.h"

#include <gtest/gtest.h>

#include <thread>

#include "celery/codec.h"
#include "redis_test.h"

using namespace celeriac;

class BackendTest : public test_support::RedisTest {
};

TEST_F(BackendTest, StoresWithExpiryAndNeverOverwritesSuccess) {
  backend::ResultBackend b(redis::Url::parse(server->url(1)), {.result_expires_s = 600});
  celery::ResultMeta m;
  m.task_id = "t1";
  m.status = celery::state::kSuccess;
  m.result = 10;
  m.date_done = celery::unix_now();
  b.store(m);
  long long ttl = b.connection().command({"TTL", "celery-task-meta-t1"}).integer;
  EXPECT_GT(ttl, 590);
  EXPECT_LE(ttl, 600);
  celery::ResultMeta late = m;
  late.status = celery::state::kFailure;
  b.store(late);
  EXPECT_EQ(b.get("t1")->status, "SUCCESS");
  EXPECT_EQ(b.get("t1")->result, 10);
  EXPECT_FALSE(b.get("missing"));
}

TEST_F(BackendTest, WaiterWakesOnPublishAndSeesEarlierResults) {
  auto url = redis::Url::parse(server->url(1));
  backend::ResultBackend b(url);
  backend::ResultWaiter w(url);
  celery::ResultMeta m;
  m.task_id = "early";
  m.status = celery::state::kSuccess;
  m.result = "x";
  b.store(m);
  auto got = w.wait("early", std::chrono::milliseconds(1000));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->result, "x");

  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    backend::ResultBackend b2(url);
    celery::ResultMeta s;
    s.task_id = "later";
    s.status = celery::state::kStarted;
    b2.store(s);
    s.status = celery::state::kFailure;
    s.result = celery::ExceptionInfo{"ValueError", "builtins", {"boom"}}.to_json();
    b2.store(s);
  });
  auto start = std::chrono::steady_clock::now();
  auto failed = w.wait("later", std::chrono::milliseconds(5000));
  writer.join();
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, "FAILURE");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_FALSE(w.wait("never", std::chrono::milliseconds(100)));
}

TEST_F(BackendTest, ChordCompletesOnLastMemberInIndexOrder) {
  backend::ResultBackend b(redis::Url::parse(server->url(1)));
  b.set_chord_size("g", 3);
  EXPECT_FALSE(b.chord_part_done({"g", 2, "c", "SUCCESS", 30}).complete);
  EXPECT_FALSE(b.chord_part_done({"g", 0, "a", "SUCCESS", 10}).complete);
  auto done = b.chord_part_done({"g", 1, "b", "SUCCESS", 20});
  ASSERT_TRUE(done.complete);
  EXPECT_FALSE(done.failed);
  EXPECT_EQ(done.results, celery::Json::array({10, 20, 30}));
  EXPECT_EQ(b.connection().command({"EXISTS", "celery-taskset-meta-g.j"}).integer, 0);
}
