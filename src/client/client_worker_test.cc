// End to end in C++: a real redis-server, a celeriac Worker in this process, and the C++
// client. (The Python interop suite in tests/interop checks the same against real Celery.)
#include <gtest/gtest.h>

#include <thread>

#include "celery/codec.h"
#include "client/app.h"
#include "redis/connection.h"
#include "redis_test.h"
#include "tasks/builtin_tasks.h"
#include "worker/worker.h"

using namespace celeriac;
using namespace std::chrono_literals;

namespace {

class RunningWorker {
 public:
  RunningWorker(const std::string& broker, const std::string& backend,
                worker::WorkerOptions opts = {}) {
    opts.broker_url = broker;
    opts.backend_url = backend;
    if (opts.concurrency == 0) opts.concurrency = 2;
    if (opts.hostname.empty()) opts.hostname = "cpp-test@%h";
    worker::TaskRegistry registry;
    tasks::register_builtin_tasks(registry);
    tasks::register_test_tasks(registry);
    worker_ = std::make_unique<worker::Worker>(opts, std::move(registry));
    thread_ = std::thread([this] { worker_->run(); });
  }
  ~RunningWorker() {
    worker_->stop();
    thread_.join();
  }

 private:
  std::unique_ptr<worker::Worker> worker_;
  std::thread thread_;
};

}  // namespace

class ClientWorkerTest : public test_support::RedisTest {
 protected:
  std::shared_ptr<client::App> app() { return client::App::create(server->url(0), server->url(1)); }
};

TEST_F(ClientWorkerTest, AddReturnsTheSumAndStoresItWithExpiry) {
  RunningWorker w(server->url(0), server->url(1), {.result_expires_s = 600});
  auto a = app();
  auto r = a->send_task("tasks.add", {4, 6});
  EXPECT_EQ(r.get(10s), 10);
  EXPECT_EQ(r.state(), "SUCCESS");
  redis::Connection c(redis::Url::parse(server->url(1)));
  long long ttl = c.command({"TTL", "celery-task-meta-" + r.id()}).integer;
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 600);
  EXPECT_EQ(a->send_task("tasks.add", {1.5, 2}).get(10s), 3.5);
  EXPECT_EQ(a->send_task("tasks.add", {"ab", "cd"}).get(10s), "abcd");
}

TEST_F(ClientWorkerTest, FailureCarriesTypeMessageAndTraceback) {
  RunningWorker w(server->url(0), server->url(1));
  auto r = app()->send_task("tests.fail", {"boom"}, {{"exc_type", "KeyError"}});
  try {
    r.get(10s);
    FAIL() << "expected TaskFailed";
  } catch (const client::TaskFailed& e) {
    EXPECT_EQ(e.state(), "FAILURE");
    EXPECT_EQ(e.info().type, "KeyError");
    EXPECT_EQ(e.info().module, "builtins");
    EXPECT_EQ(e.info().message(), "boom");
    EXPECT_NE(e.traceback().find("KeyError: boom"), std::string::npos);
  }
  // A bad argument type is a TypeError, as in Python.
  try {
    app()->send_task("tasks.add", {1, celery::Json::object()}).get(10s);
    FAIL();
  } catch (const client::TaskFailed& e) {
    EXPECT_EQ(e.info().type, "TypeError");
  }
}

TEST_F(ClientWorkerTest, RetriesUntilSuccessOrBudgetSpent) {
  RunningWorker w(server->url(0), server->url(1));
  auto a = app();
  auto start = std::chrono::steady_clock::now();
  auto ok = a->send_task("tests.flaky", {2});
  auto bad = a->send_task("tests.flaky", {10});
  EXPECT_EQ(ok.get(20s), 2);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 1800ms);  // two retries with countdown 1 s
  try {
    bad.get(20s);
    FAIL();
  } catch (const client::TaskFailed& e) {
    EXPECT_EQ(e.info().type, "RuntimeError");  // the retry reason, re-raised after 3 retries
  }
  took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 2800ms);
  EXPECT_LE(took, 6000ms);
}

TEST_F(ClientWorkerTest, CountdownExpiresAndRevoke) {
  RunningWorker w(server->url(0), server->url(1));
  auto a = app();
  double sent = celery::unix_now();
  auto later = a->send_task("tasks.add", {1, 1}, {}, {.countdown_s = 1.0});
  auto expired = a->send_task("tasks.add", {1, 1}, {}, {.expires_s = -1.0});
  auto revoked = a->send_task("tasks.add", {1, 1}, {}, {.countdown_s = 1.5});
  std::this_thread::sleep_for(200ms);
  revoked.revoke();
  EXPECT_EQ(later.get(10s), 2);
  auto meta = later.meta();
  ASSERT_TRUE(meta && meta->date_done);
  EXPECT_GE(*meta->date_done, sent + 1.0);
  EXPECT_LE(*meta->date_done, sent + 1.2);  // within 20%
  EXPECT_THROW(expired.get(10s), client::TaskFailed);
  EXPECT_EQ(expired.state(), "REVOKED");
  try {
    revoked.get(10s);
    FAIL();
  } catch (const client::TaskFailed& e) {
    EXPECT_EQ(e.state(), "REVOKED");
    EXPECT_EQ(e.info().type, "TaskRevokedError");
  }
}

TEST_F(ClientWorkerTest, UnregisteredAndMalformedMessagesDoNotStopTheWorker) {
  RunningWorker w(server->url(0), server->url(1));
  auto a = app();
  redis::Connection c(redis::Url::parse(server->url(0)));
  c.command({"LPUSH", "celery", "{definitely not json"}).ok();
  c.command({"LPUSH", "celery",
             R"({"body": "!!!", "content-type": "application/json", "headers": {"task": "tasks.add", "id": "x1"}, "properties": {"body_encoding": "base64", "delivery_tag": "t1", "delivery_info": {"exchange": "", "routing_key": "celery"}}})"})
      .ok();
  c.command({"LPUSH", "celery",
             R"({"body": "gAN9cQAu", "content-type": "application/x-python-serialize", "headers": {"task": "tasks.add", "id": "x2"}, "properties": {"body_encoding": "base64", "delivery_tag": "t2", "delivery_info": {"exchange": "", "routing_key": "celery"}}})"})
      .ok();
  try {
    a->send_task("tasks.nope", {}).get(10s);
    FAIL();
  } catch (const client::TaskFailed& e) {
    EXPECT_EQ(e.info().type, "NotRegistered");
    EXPECT_EQ(e.info().module, "celery.exceptions");
  }
  EXPECT_EQ(a->send_task("tasks.add", {2, 3}).get(10s), 5);
  auto dead = c.command({"LRANGE", "celeriac.deadletter", "0", "-1"});
  ASSERT_EQ(dead.elements.size(), 3u);
  std::string all;
  for (const auto& e : dead.elements) all += celery::Json::parse(e.str)["reason"].get<std::string>() + "|";
  EXPECT_NE(all.find("not valid JSON"), std::string::npos) << all;
  EXPECT_NE(all.find("base64"), std::string::npos) << all;
  EXPECT_NE(all.find("pickle"), std::string::npos) << all;
  EXPECT_EQ(c.command({"HLEN", "unacked"}).integer, 0);
}

TEST_F(ClientWorkerTest, PriorityZeroRunsFirstAndQueuesAreServedFairly) {
  auto a = app();
  auto low = a->send_task("tests.echo", {"low"}, {}, {.priority = 9});
  auto high = a->send_task("tests.echo", {"high"}, {}, {.priority = 0});
  auto qa = a->send_task("tests.echo", {"a"}, {}, {.queue = "qa"});
  auto qb = a->send_task("tests.echo", {"b"}, {}, {.queue = "qb"});
  {
    RunningWorker w(server->url(0), server->url(1),
                    {.queues = {"celery", "qa", "qb"}, .concurrency = 1, .prefetch_multiplier = 1});
    high.get(10s);
    low.get(10s);
    EXPECT_EQ(qa.get(10s)["args"][0], "a");
    EXPECT_EQ(qb.get(10s)["args"][0], "b");
  }
  EXPECT_LT(*high.meta()->date_done, *low.meta()->date_done);
}
