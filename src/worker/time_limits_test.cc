// Which time limits a task runs with, and the signal names revoke and WorkerLostError use.
#include "worker/time_limits.h"

#include <gtest/gtest.h>
#include <signal.h>

using namespace celeriac;
using namespace celeriac::worker;

TEST(TimeLimits, HeaderThenRemoteThenTaskThenWorker) {
  celery::TaskMessage m;
  TaskOptions task{.time_limit_s = 20, .soft_time_limit_s = 10};
  WorkerOptions worker;
  worker.time_limit_s = 60;
  worker.soft_time_limit_s = 30;

  auto l = effective_limits(m, task, std::nullopt, worker);
  EXPECT_EQ(l.hard_s, 20);
  EXPECT_EQ(l.soft_s, 10);

  l = effective_limits(m, TaskOptions{}, std::nullopt, worker);
  EXPECT_EQ(l.hard_s, 60);
  EXPECT_EQ(l.soft_s, 30);

  // time_limit(task, hard=5, soft=None): the task's own soft limit is replaced by none, so
  // the worker's applies, as Celery's `task.soft_time_limit or pool default`.
  l = effective_limits(m, task, TimeLimits{5, std::nullopt}, worker);
  EXPECT_EQ(l.hard_s, 5);
  EXPECT_EQ(l.soft_s, 30);

  m.hard_time_limit_s = 2;
  m.soft_time_limit_s = 1;
  l = effective_limits(m, task, TimeLimits{5, 4}, worker);
  EXPECT_EQ(l.hard_s, 2);
  EXPECT_EQ(l.soft_s, 1);

  // 0 means "not set", as Python's `or`.
  m.hard_time_limit_s = 0;
  m.soft_time_limit_s.reset();
  l = effective_limits(m, TaskOptions{}, std::nullopt, WorkerOptions{});
  EXPECT_FALSE(l.hard_s);
  EXPECT_FALSE(l.soft_s);
}

TEST(TimeLimits, ExceededAsCeleryStoresIt) {
  EXPECT_EQ(
      time_limit_exceeded(1).to_json().dump(),
      R"({"exc_type":"TimeLimitExceeded","exc_message":[1],"exc_module":"billiard.exceptions"})");
  EXPECT_EQ(time_limit_exceeded(1.5).to_json()["exc_message"][0], 1.5);
}

TEST(Signals, NamesAsCeleryAndPythonWriteThem) {
  EXPECT_EQ(signal_number("SIGTERM"), SIGTERM);
  EXPECT_EQ(signal_number("term"), SIGTERM);
  EXPECT_EQ(signal_number("SIGKILL"), SIGKILL);
  EXPECT_EQ(signal_number("9"), 9);
  EXPECT_EQ(signal_number(""), SIGTERM);  // Celery's default
  EXPECT_EQ(signal_number("SIGNOPE"), 0);
  EXPECT_EQ(signal_name(SIGABRT), "SIGABRT");
  EXPECT_EQ(signal_name(SIGSEGV), "SIGSEGV");
}
