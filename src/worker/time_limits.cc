// Time limits, terminate and abandoned executor threads (see time_limits.h).
#include "worker/time_limits.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>

#include "celery/codec.h"

namespace celeriac::worker {
namespace {

using celery::Json;

std::optional<double> positive(std::optional<double> v) {
  if (v && *v > 0) return v;
  return std::nullopt;
}

// Python prints 1 for time_limit=1 and 1.5 for 1.5: keep integral limits integral on the wire.
Json limit_json(double v) {
  if (std::floor(v) == v && std::abs(v) < 1e15) return static_cast<long long>(v);
  return v;
}

// Threads pool: the request's outcome is recorded now and its thread let go. The thread keeps
// running the task (nothing can stop a thread safely); when the task returns, the thread sees
// `abandoned` and exits without touching the request. A fresh executor takes its place.
void abandon_locked(Worker::State& s, const RequestPtr& r, Outcome outcome) {
  r->exec.abandoned = true;
  if (auto it = s.active.find(r->message.id); it != s.active.end() && it->second == r) {
    s.active.erase(it);
  }
  finish_locked(s, std::move(outcome));
  auto it = std::find_if(s.threads.begin(), s.threads.end(),
                         [&](const std::thread& t) { return t.get_id() == r->exec.executor; });
  if (it != s.threads.end()) {
    it->detach();
    s.threads.erase(it);
  }
  s.running_executors--;
  s.pool.abandoned_threads++;
  start_executor_locked(s);
  spdlog::warn(
      "task={} id={} event=executor-abandoned abandoned_threads={} reason=\"a thread "
      "cannot be stopped; use --pool processes for tasks that must be killable\"",
      r->message.task, r->message.id, s.pool.abandoned_threads);
}

void soft_limit_locked(Worker::State& s, const RequestPtr& r) {
  auto& e = r->exec;
  e.soft_sent = true;
  spdlog::warn("task={} id={} event=soft-time-limit limit_s={}", r->message.task, r->message.id,
               *e.limits.soft_s);
  if (s.options.pool == PoolKind::Threads) {
    r->cancelled.set(CancelReason::SoftTimeLimit);
    return;
  }
  // The job number travels with the signal, so a child that already moved on to its next
  // job ignores a late one.
  if (e.child_pid > 0) ::sigqueue(e.child_pid, SIGUSR1, sigval{.sival_int = e.job});
}

void hard_limit_locked(Worker::State& s, const RequestPtr& r) {
  auto& e = r->exec;
  double hard = *e.limits.hard_s;
  if (s.options.pool == PoolKind::Threads) {
    e.hard_limit_hit = true;
    spdlog::error("task={} id={} event=hard-time-limit limit_s={}", r->message.task, r->message.id,
                  hard);
    Outcome o{r, Outcome::Kind::Failure};
    o.error = time_limit_exceeded(hard);
    o.runtime_s = celery::unix_now() - r->started_at.value_or(celery::unix_now());
    abandon_locked(s, r, std::move(o));
    return;
  }
  // Process pool: kill the child; its executor thread sees it die and records the failure.
  // With no child (already answered) the task is finishing: let it.
  if (e.child_pid <= 0) return;
  e.hard_limit_hit = true;
  spdlog::error("task={} id={} event=hard-time-limit limit_s={} pid={}", r->message.task,
                r->message.id, hard, e.child_pid);
  ::kill(e.child_pid, SIGKILL);
}

}  // namespace

TimeLimits effective_limits(const celery::TaskMessage& m, const TaskOptions& task,
                            const std::optional<TimeLimits>& remote, const WorkerOptions& worker) {
  TimeLimits out;
  auto task_hard = remote ? remote->hard_s : task.time_limit_s;
  auto task_soft = remote ? remote->soft_s : task.soft_time_limit_s;
  out.hard_s = positive(m.hard_time_limit_s);
  if (!out.hard_s) out.hard_s = positive(task_hard);
  if (!out.hard_s) out.hard_s = positive(worker.time_limit_s);
  out.soft_s = positive(m.soft_time_limit_s);
  if (!out.soft_s) out.soft_s = positive(task_soft);
  if (!out.soft_s) out.soft_s = positive(worker.soft_time_limit_s);
  return out;
}

void begin_execution_locked(Worker::State& s, const RequestPtr& r) {
  std::optional<TimeLimits> remote;
  if (auto it = s.time_limits.find(r->message.task); it != s.time_limits.end()) {
    remote = TimeLimits{it->second.first, it->second.second};
  }
  r->exec.limits = effective_limits(r->message, r->task->options, remote, s.options);
  r->exec.job = ++s.pool.next_job;
  r->exec.executor = std::this_thread::get_id();
  if (r->exec.limits.hard_s || r->exec.limits.soft_s) s.pool.timer_cv.notify_one();
}

void time_limit_loop(Worker::State& s) {
  std::unique_lock lock(s.mutex);
  while (!(s.stopping && s.running_executors == 0)) {
    double now = celery::unix_now();
    double next = now + 0.1;  // also how soon a new task's deadline is first seen
    std::vector<RequestPtr> hard;
    for (const auto& [id, r] : s.active) {
      auto& e = r->exec;
      if (!r->started_at || e.hard_limit_hit || e.terminate_signal) continue;
      if (e.limits.soft_s && !e.soft_sent) {
        double at = *r->started_at + *e.limits.soft_s;
        if (now >= at) {
          soft_limit_locked(s, r);
        } else {
          next = std::min(next, at);
        }
      }
      if (e.limits.hard_s) {
        double at = *r->started_at + *e.limits.hard_s;
        if (now >= at) {
          hard.push_back(r);
        } else {
          next = std::min(next, at);
        }
      }
    }
    for (const auto& r : hard) hard_limit_locked(s, r);  // may change `active`
    s.pool.timer_cv.wait_for(lock, std::chrono::duration<double>(std::max(0.002, next - now)));
  }
}

bool terminate_locked(Worker::State& s, const RequestPtr& r, int signum) {
  auto& e = r->exec;
  if (e.hard_limit_hit || e.terminate_signal || e.abandoned) return false;
  if (s.options.pool == PoolKind::Threads) {
    e.terminate_signal = signum;
    r->cancelled.set(CancelReason::Revoked);
    abandon_locked(s, r,
                   {.request = r,
                    .kind = Outcome::Kind::Revoked,
                    .revoke_reason = "terminated",
                    .signum = signum});
    return true;
  }
  // Answered: it is finishing. Not yet sent (waiting behind a batch, or being handed over):
  // its executor sees the signal number before sending and never starts it.
  if (e.answered) return false;
  e.terminate_signal = signum;
  if (e.child_pid <= 0) return true;
  spdlog::info("task={} id={} event=terminate signal={} pid={}", r->message.task, r->message.id,
               signum, e.child_pid);
  ::kill(e.child_pid, signum);
  return true;
}

Outcome outcome_of(const RequestPtr& r, TaskRun run, int terminate_signal) {
  Outcome o{r};
  o.runtime_s = run.runtime_s;
  if (terminate_signal) {
    o.kind = Outcome::Kind::Revoked;
    o.revoke_reason = "terminated";
    o.signum = terminate_signal;
    return o;
  }
  switch (run.kind) {
    case TaskRun::Kind::Success:
      o.kind = Outcome::Kind::Success;
      o.value = std::move(run.value);
      break;
    case TaskRun::Kind::Failure:
      o.kind = Outcome::Kind::Failure;
      break;
    case TaskRun::Kind::Retry:
      o.kind = Outcome::Kind::Retry;
      o.retry_countdown_s = run.retry_countdown_s;
      break;
    case TaskRun::Kind::Rejected:
      o.kind = Outcome::Kind::Rejected;
      o.requeue = run.requeue;
      if (!run.requeue) {
        o.dead_letter_reason =
            "rejected by the task" + (run.reject_reason.empty() ? "" : ": " + run.reject_reason);
      }
      return o;
  }
  o.error = std::move(run.error);
  o.traceback = std::move(run.traceback);
  return o;
}

int signal_number(const std::string& name) {
  if (name.empty()) return SIGTERM;
  if (std::all_of(name.begin(), name.end(), ::isdigit)) {
    int n = std::stoi(name);
    return n > 0 && n < NSIG ? n : 0;
  }
  std::string upper;
  for (char c : name)
    upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  if (upper.rfind("SIG", 0) == 0) upper = upper.substr(3);
  for (int n = 1; n < NSIG; ++n) {
    const char* abbrev = ::sigabbrev_np(n);
    if (abbrev && upper == abbrev) return n;
  }
  return 0;
}

std::string signal_name(int signum) {
  const char* abbrev = ::sigabbrev_np(signum);
  return abbrev ? std::string("SIG") + abbrev : std::string();
}

celery::ExceptionInfo time_limit_exceeded(double hard_s) {
  return {"TimeLimitExceeded", "billiard.exceptions", Json::array({limit_json(hard_s)})};
}

}  // namespace celeriac::worker
