// The process pool's protocol: frames, reply encoding, and a real `celeriac pool-child`
// running tasks, taking its soft-limit signal, and dying in ways the parent must see.
#include "worker/process_pool.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "celery/codec.h"
#include "worker/time_limits.h"

using namespace celeriac;
using namespace celeriac::worker;
using celery::Json;

namespace {

std::unique_ptr<PoolChild> start_child() {
  return PoolChild::spawn({CELERIAC_BIN, "pool-child", "-l", "warning", "--test-tasks"});
}

// One job through the child, as ChildSlot sends it; nullopt when the child died.
std::optional<Json> run_job(PoolChild& child, int job, const std::string& task, Json args) {
  celery::TaskMessage m;
  m.id = celery::uuid4();
  m.task = task;
  m.args = std::move(args);
  Json frame = {
      {"job", job}, {"hostname", "test@host"}, {"message", celery::encode_task_message(m)}};
  if (!write_frame(child.fd(), frame.dump())) return std::nullopt;
  auto reply = read_frame(child.fd());
  if (!reply) return std::nullopt;
  return Json::parse(*reply);
}

}  // namespace

TEST(PoolFrames, RoundTripSmallAndLargeAndSeeEndOfFile) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::string big(3 << 20, 'x');  // larger than the socket buffer: written while read
  std::thread writer([&] {
    EXPECT_TRUE(write_frame(sv[0], "{\"a\":1}"));
    EXPECT_TRUE(write_frame(sv[0], ""));
    EXPECT_TRUE(write_frame(sv[0], big));
    ::close(sv[0]);
  });
  EXPECT_EQ(read_frame(sv[1]), "{\"a\":1}");
  EXPECT_EQ(read_frame(sv[1]), "");
  EXPECT_EQ(read_frame(sv[1]), big);
  writer.join();
  EXPECT_EQ(read_frame(sv[1]), std::nullopt);
  EXPECT_FALSE(write_frame(sv[1], "to nobody"));  // and no SIGPIPE
  ::close(sv[1]);
}

TEST(PoolFrames, TaskRunSurvivesTheTrip) {
  TaskRun retry;
  retry.kind = TaskRun::Kind::Retry;
  retry.error = {"RuntimeError", "builtins", Json::array({"again"})};
  retry.traceback = "tb";
  retry.retry_countdown_s = 2.5;
  TaskRun back = task_run_from_json(task_run_to_json(retry, 4));
  EXPECT_EQ(back.kind, TaskRun::Kind::Retry);
  EXPECT_EQ(back.error.to_json(), retry.error.to_json());
  EXPECT_EQ(back.traceback, "tb");
  EXPECT_EQ(back.retry_countdown_s, 2.5);

  TaskRun rejected;
  rejected.kind = TaskRun::Kind::Rejected;
  rejected.requeue = true;
  rejected.reject_reason = "not wanted";
  back = task_run_from_json(task_run_to_json(rejected, 6));
  EXPECT_EQ(back.kind, TaskRun::Kind::Rejected);
  EXPECT_TRUE(back.requeue);
  EXPECT_EQ(back.reject_reason, "not wanted");

  TaskRun ok;
  ok.value = Json{{"x", Json::array({1, "two"})}};
  back = task_run_from_json(task_run_to_json(ok, 5));
  EXPECT_EQ(back.kind, TaskRun::Kind::Success);
  EXPECT_EQ(back.value, ok.value);
}

TEST(PoolChildProcess, RunsTasksAndReportsFailures) {
  auto child = start_child();
  auto reply = run_job(*child, 1, "tasks.add", Json::array({2, 3}));
  ASSERT_TRUE(reply);
  EXPECT_EQ((*reply)["kind"], "success");
  EXPECT_EQ((*reply)["value"], 5);
  EXPECT_EQ((*reply)["job"], 1);

  reply = run_job(*child, 2, "tests.fail", Json::array({"boom"}));
  ASSERT_TRUE(reply);
  EXPECT_EQ((*reply)["kind"], "failure");
  EXPECT_EQ((*reply)["error"]["exc_type"], "ValueError");
  EXPECT_NE((*reply)["traceback"].get<std::string>().find("ValueError: boom"), std::string::npos);

  reply = run_job(*child, 3, "tests.flaky", Json::array({1}));
  ASSERT_TRUE(reply);
  EXPECT_EQ((*reply)["kind"], "retry");
  EXPECT_EQ((*reply)["countdown"], 1.0);
}

TEST(PoolChildProcess, ChildHoldsNoDescriptorButItsSocket) {
  auto child = start_child();
  ASSERT_TRUE(run_job(*child, 1, "tasks.add", Json::array({1, 1})));  // it is up
  int extra = 0;
  std::string dir = "/proc/" + std::to_string(child->pid()) + "/fd";
  for (int fd = 4; fd < 64; ++fd) {
    extra += ::access((dir + "/" + std::to_string(fd)).c_str(), F_OK) == 0 ? 1 : 0;
  }
  EXPECT_EQ(extra, 0);
  EXPECT_EQ(::access((dir + "/3").c_str(), F_OK), 0);
}

// The worker's soft time limit signal for job `job`, sent to `pid` 100 ms from now.
std::thread soft_limit_later(pid_t pid, int job) {
  return std::thread([pid, job] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::sigqueue(pid, SIGUSR1, sigval{.sival_int = job});
  });
}

TEST(PoolChildProcess, SoftSignalCancelsOnlyTheJobItNames) {
  auto child = start_child();
  // A signal for another job (one that already ended) is ignored...
  std::thread late = soft_limit_later(child->pid(), 6);
  auto reply = run_job(*child, 7, "tests.cancellable", Json::array({0.4}));
  late.join();
  ASSERT_TRUE(reply);
  EXPECT_EQ((*reply)["value"], "not cancelled");
  // ...the one for the running job sets its cancel flag.
  std::thread soft = soft_limit_later(child->pid(), 8);
  reply = run_job(*child, 8, "tests.cancellable", Json::array({10}));
  soft.join();
  ASSERT_TRUE(reply);
  EXPECT_EQ((*reply)["value"], "soft time limit");
  // And a task that does not catch it fails as Celery stores it.
  std::thread soft2 = soft_limit_later(child->pid(), 9);
  reply = run_job(*child, 9, "tasks.sleep", Json::array({10}));
  soft2.join();
  ASSERT_TRUE(reply);
  EXPECT_EQ((*reply)["error"], (Json{{"exc_type", "SoftTimeLimitExceeded"},
                                     {"exc_message", Json::array()},
                                     {"exc_module", "billiard.exceptions"}}));
}

TEST(PoolChildProcess, AParentSeesItsChildAbortAndGetsCeleryText) {
  auto child = start_child();
  EXPECT_FALSE(run_job(*child, 3, "tests.abort", Json::array()));
  int status = child->reap();
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGABRT);

  Worker::State state;
  auto r = std::make_shared<Request>();
  r->message.task = "tests.abort";
  r->message.id = "id-1";
  r->exec.job = 3;
  // Below --max-deliveries the message goes back with its count raised (task_reject_on_worker_lost).
  Outcome again = on_child_lost(state, r, status);
  EXPECT_EQ(again.kind, Outcome::Kind::Rejected);
  EXPECT_TRUE(again.requeue && again.died_running);
  // The last allowed delivery: FAILURE as Celery stores it, and the dead-letter list.
  r->message.deliveries = state.options.max_deliveries - 1;
  Outcome o = on_child_lost(state, r, status);
  EXPECT_EQ(o.kind, Outcome::Kind::Failure);
  EXPECT_EQ(o.dead_letter_reason,
            "delivered 5 times without completing: Worker exited prematurely: signal 6 (SIGABRT) "
            "Job: 2.");
  EXPECT_EQ(
      o.error.to_json(),
      (Json{{"exc_type", "WorkerLostError"},
            {"exc_message", Json::array({"Worker exited prematurely: signal 6 (SIGABRT) Job: 2."})},
            {"exc_module", "billiard.exceptions"}}));
  EXPECT_TRUE(o.traceback.empty());
}

TEST(PoolChildProcess, KilledChildIsSeenAndAnIdleOneLeavesOnEndOfFile) {
  auto child = start_child();
  std::thread killer([pid = child->pid()] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::kill(pid, SIGKILL);
  });
  EXPECT_FALSE(run_job(*child, 1, "tests.spin", Json::array({10})));
  killer.join();
  int status = child->reap();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  auto idle = start_child();
  pid_t pid = idle->pid();
  ASSERT_TRUE(run_job(*idle, 1, "tasks.add", Json::array({1, 2})));
  idle.reset();                   // closes the socket and reaps
  EXPECT_EQ(::kill(pid, 0), -1);  // gone (and reaped: no zombie left)
}

// ChildSlot is what an executor thread uses: the same calls the time-limit thread and the
// revoke command make, against a real child.
class ChildSlotTest : public ::testing::Test {
 protected:
  ChildSlotTest() {
    state.options.pool = PoolKind::Processes;
    state.options.pool_child_argv = {CELERIAC_BIN, "pool-child", "-l", "warning", "--test-tasks"};
    state.hostname = "slot@test";
    tasks.add("tests.spin", [](TaskContext&) { return Json(); });  // only its options are read
  }

  RequestPtr request(const std::string& task, Json args, double hard_s = 0) {
    auto r = std::make_shared<Request>();
    r->message.id = celery::uuid4();
    r->message.task = task;
    r->message.args = std::move(args);
    r->task = tasks.find("tests.spin");
    r->started_at = celery::unix_now();
    if (hard_s > 0) r->exec.limits.hard_s = hard_s;
    std::lock_guard lock(state.mutex);
    r->exec.job = ++state.pool.next_job;
    return r;
  }

  // Waits until the request is in its child, as the time-limit thread would find it.
  void wait_until_running(const RequestPtr& r) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lock(state.mutex);
        if (r->exec.child_pid > 0) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    FAIL() << "never reached its child";
  }

  Worker::State state;
  TaskRegistry tasks;
};

TEST_F(ChildSlotTest, RunsAndKeepsItsChild) {
  ChildSlot slot(state);
  Outcome o = slot.run(request("tasks.add", Json::array({20, 22})));
  EXPECT_EQ(o.kind, Outcome::Kind::Success);
  EXPECT_EQ(o.value, 42);
  std::set<pid_t> before = state.pool.child_pids;
  EXPECT_EQ(slot.run(request("tasks.add", Json::array({1, 1}))).value, 2);
  EXPECT_EQ(state.pool.child_pids, before);
  EXPECT_EQ(before.size(), 1u);
}

TEST_F(ChildSlotTest, HardLimitKillsAndReplacesTheChild) {
  ChildSlot slot(state);
  auto r = request("tests.spin", Json::array({10}), 0.2);
  std::set<pid_t> before = state.pool.child_pids;
  std::thread timer([&] {
    wait_until_running(r);
    std::lock_guard lock(state.mutex);
    r->exec.hard_limit_hit = true;  // as time_limit_loop does at the deadline
    ::kill(r->exec.child_pid, SIGKILL);
  });
  Outcome o = slot.run(r);
  timer.join();
  EXPECT_EQ(o.kind, Outcome::Kind::Failure);
  EXPECT_EQ(o.error.to_json(), time_limit_exceeded(0.2).to_json());
  EXPECT_TRUE(o.traceback.empty());
  EXPECT_EQ(state.pool.child_pids.size(), 1u);
  EXPECT_NE(state.pool.child_pids, before);  // a new child
  EXPECT_EQ(slot.run(request("tasks.add", Json::array({2, 3}))).value, 5);
}

TEST_F(ChildSlotTest, TerminateSignalsTheChildOrStopsARequestNotYetSent) {
  ChildSlot slot(state);
  auto r = request("tests.spin", Json::array({10}));
  std::thread revoke([&] {
    wait_until_running(r);
    std::lock_guard lock(state.mutex);
    EXPECT_TRUE(terminate_locked(state, r, SIGTERM));
  });
  Outcome o = slot.run(r);
  revoke.join();
  EXPECT_EQ(o.kind, Outcome::Kind::Revoked);
  EXPECT_EQ(o.revoke_reason, "terminated");
  EXPECT_EQ(o.signum, SIGTERM);

  auto waiting = request("tests.spin", Json::array({10}));
  {
    std::lock_guard lock(state.mutex);
    EXPECT_TRUE(terminate_locked(state, waiting, SIGKILL));
  }
  auto t0 = std::chrono::steady_clock::now();
  o = slot.run(waiting);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));  // never ran
  EXPECT_EQ(o.kind, Outcome::Kind::Revoked);
  EXPECT_EQ(o.signum, SIGKILL);

  // Finished requests cannot be terminated any more ("tasks unknown").
  auto done = request("tasks.add", Json::array({1, 2}));
  EXPECT_EQ(slot.run(done).value, 3);
  std::lock_guard lock(state.mutex);
  EXPECT_FALSE(terminate_locked(state, done, SIGTERM));
}

TEST_F(ChildSlotTest, AChildThatDiedIdleIsReplacedWithoutFailingTheNextTask) {
  ChildSlot slot(state);
  pid_t first = *state.pool.child_pids.begin();
  ::kill(first, SIGKILL);  // e.g. the OOM killer, between two tasks
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Outcome o = slot.run(request("tasks.add", Json::array({3, 4})));
  EXPECT_EQ(o.kind, Outcome::Kind::Success);
  EXPECT_EQ(o.value, 7);
  ASSERT_EQ(state.pool.child_pids.size(), 1u);
  EXPECT_NE(*state.pool.child_pids.begin(), first);
}
