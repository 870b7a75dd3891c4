// The process pool (see process_pool.h).
#include "worker/process_pool.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <thread>

#include "celery/codec.h"
#include "worker/time_limits.h"

extern char** environ;

namespace celeriac::worker {
namespace {

using celery::Json;

constexpr int kChildFd = 3;
constexpr uint32_t kMaxFrame = 1u << 30;
constexpr const char* kParentEnv = "CELERIAC_POOL_PARENT";

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool read_all(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

std::string kind_name(TaskRun::Kind k) {
  switch (k) {
    case TaskRun::Kind::Success:
      return "success";
    case TaskRun::Kind::Failure:
      return "failure";
    case TaskRun::Kind::Retry:
      return "retry";
    case TaskRun::Kind::Rejected:
      return "rejected";
  }
  return "failure";
}

// billiard's human_status: "signal 6 (SIGABRT)" or "exitcode 3".
std::string human_status(int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    int sig = WTERMSIG(wait_status);
    std::string name = signal_name(sig);
    return "signal " + std::to_string(sig) + (name.empty() ? "" : " (" + name + ")");
  }
  return "exitcode " + std::to_string(WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 0);
}

// --- child side: the soft-limit signal ---
std::atomic<int> g_current_job{0};
CancelFlag* g_cancel = nullptr;

void on_soft_limit(int, siginfo_t* info, void*) {
  // Only the parent's sigqueue for the job running now counts (async-signal-safe: atomics).
  if (info->si_code == SI_QUEUE && info->si_value.sival_int == g_current_job.load() &&
      g_cancel != nullptr) {
    g_cancel->set(CancelReason::SoftTimeLimit);
  }
}

}  // namespace

bool write_frame(int fd, const std::string& payload) {
  if (payload.size() > kMaxFrame) return false;
  uint32_t n = static_cast<uint32_t>(payload.size());
  unsigned char header[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                             static_cast<unsigned char>(n >> 16),
                             static_cast<unsigned char>(n >> 24)};
  return write_all(fd, reinterpret_cast<const char*>(header), 4) &&
         write_all(fd, payload.data(), payload.size());
}

std::optional<std::string> read_frame(int fd) {
  unsigned char header[4];
  if (!read_all(fd, reinterpret_cast<char*>(header), 4)) return std::nullopt;
  uint32_t n = header[0] | (header[1] << 8) | (header[2] << 16) | (uint32_t{header[3]} << 24);
  if (n > kMaxFrame) return std::nullopt;
  std::string payload(n, '\0');
  if (!read_all(fd, payload.data(), n)) return std::nullopt;
  return payload;
}

Json task_run_to_json(const TaskRun& run, int job) {
  Json j = {{"job", job}, {"kind", kind_name(run.kind)}, {"runtime", run.runtime_s}};
  if (run.kind == TaskRun::Kind::Success) {
    j["value"] = run.value;
  } else if (run.kind == TaskRun::Kind::Rejected) {
    j["requeue"] = run.requeue;
    j["reason"] = run.reject_reason;
  } else {
    j["error"] = run.error.to_json();
    j["traceback"] = run.traceback;
  }
  if (run.kind == TaskRun::Kind::Retry) j["countdown"] = run.retry_countdown_s;
  return j;
}

TaskRun task_run_from_json(const Json& reply) {
  TaskRun run;
  std::string kind = reply.at("kind").get<std::string>();
  run.runtime_s = reply.value("runtime", 0.0);
  if (kind == "success") {
    run.kind = TaskRun::Kind::Success;
    run.value = reply.value("value", Json());
    return run;
  }
  if (kind == "rejected") {
    run.kind = TaskRun::Kind::Rejected;
    run.requeue = reply.value("requeue", false);
    run.reject_reason = reply.value("reason", "");
    return run;
  }
  run.kind = kind == "retry" ? TaskRun::Kind::Retry : TaskRun::Kind::Failure;
  run.error = celery::ExceptionInfo::from_json(reply.value("error", Json::object()));
  run.traceback = reply.value("traceback", "");
  run.retry_countdown_s = reply.value("countdown", 0.0);
  return run;
}

// --- parent side ---------------------------------------------------------------------------

std::unique_ptr<PoolChild> PoolChild::spawn(const std::vector<std::string>& argv) {
  if (argv.empty())
    throw std::system_error(EINVAL, std::generic_category(), "no pool child command");
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    throw std::system_error(errno, std::generic_category(), "socketpair");
  }
  int child_end = sv[1];
  if (child_end == kChildFd) {  // dup2(3, 3) would keep close-on-exec: move it out of the way
    child_end = ::fcntl(sv[1], F_DUPFD_CLOEXEC, kChildFd + 1);
    ::close(sv[1]);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, child_end, kChildFd);
  posix_spawn_file_actions_addclosefrom_np(&actions, kChildFd + 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);  // the worker blocks SIGTERM etc. for sigwait
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, kParentEnv, std::strlen(kParentEnv)) != 0) env_storage.emplace_back(*e);
  }
  env_storage.push_back(std::string(kParentEnv) + "=" + std::to_string(::getpid()));
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, args[0], &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(child_end);
  if (rc != 0) {
    ::close(sv[0]);
    throw std::system_error(rc, std::generic_category(), "cannot start pool child " + argv[0]);
  }
  return std::unique_ptr<PoolChild>(new PoolChild(pid, sv[0]));
}

int PoolChild::reap() {
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  return status;
}

PoolChild::~PoolChild() {
  ::close(fd_);
  if (reaped_) return;
  // An idle child exits on end of file at once; give it a moment, then make sure.
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    pid_t got = ::waitpid(pid_, &status, WNOHANG);
    if (got == pid_ || (got < 0 && errno != EINTR)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid_, SIGKILL);
  reap();
}

ChildSlot::ChildSlot(Worker::State& s) : s_(s) {
  try {
    start();
  } catch (const std::exception& e) {
    spdlog::error("event=pool-child-start-failed error=\"{}\"", e.what());  // retried per task
  }
}

ChildSlot::~ChildSlot() { stop(); }

void ChildSlot::start() {
  child_ = PoolChild::spawn(s_.options.pool_child_argv);
  std::lock_guard lock(s_.mutex);
  s_.pool.child_pids.insert(child_->pid());
  spdlog::debug("event=pool-child-started pid={}", child_->pid());
}

void ChildSlot::stop() {
  if (!child_) return;
  {
    std::lock_guard lock(s_.mutex);
    s_.pool.child_pids.erase(child_->pid());
  }
  child_.reset();
}

Outcome ChildSlot::run(const RequestPtr& r) {
  if (!child_) {
    try {
      start();
    } catch (const std::exception& e) {
      Outcome o{r, Outcome::Kind::Failure};
      o.error = {"WorkerLostError", "billiard.exceptions", Json::array({e.what()})};
      return o;
    }
  }
  auto started = std::chrono::steady_clock::now();
  int job;
  {
    std::lock_guard lock(s_.mutex);
    if (r->exec.terminate_signal) {  // terminated before it reached the child
      r->exec.answered = true;
      return outcome_of(r, TaskRun{}, r->exec.terminate_signal);
    }
    job = r->exec.job;
    r->exec.child_pid = child_->pid();
  }
  Json frame = {{"job", job},
                {"hostname", s_.hostname},
                {"message", celery::encode_task_message(r->message)},
                // Delivery state the envelope does not carry as the parent received it.
                {"redelivered", r->message.redelivered}};
  std::optional<std::string> reply;
  std::string text = frame.dump();
  bool sent = write_frame(child_->fd(), text);
  if (!sent) {
    // The child died while idle (OOM killer, a stray signal): the task never reached it, so
    // it is not the task's fault. Replace the child and hand the task to the new one.
    spdlog::warn("event=pool-child-lost-idle pid={} status=\"{}\"", child_->pid(),
                 human_status(child_->reap()));
    stop();
    try {
      start();
      std::lock_guard lock(s_.mutex);
      r->exec.child_pid = child_->pid();
      sent = write_frame(child_->fd(), text);
    } catch (const std::exception& e) {
      spdlog::error("event=pool-child-start-failed error=\"{}\"", e.what());
    }
  }
  if (sent) reply = read_frame(child_->fd());
  if (!child_) {  // no child could be started for it
    std::lock_guard lock(s_.mutex);
    r->exec.child_pid = 0;
    r->exec.answered = true;
    Outcome o{r, Outcome::Kind::Failure};
    o.error = {"WorkerLostError", "billiard.exceptions",
               Json::array({"Could not start a pool child"})};
    return o;
  }
  int terminate_signal;
  bool hard_limit_hit;
  {
    // From here on nobody signals the child for this request (see Execution::child_pid).
    std::lock_guard lock(s_.mutex);
    r->exec.child_pid = 0;
    r->exec.answered = true;
    terminate_signal = r->exec.terminate_signal;
    hard_limit_hit = r->exec.hard_limit_hit;
  }
  if (reply && !terminate_signal && !hard_limit_hit) {
    try {
      return outcome_of(r, task_run_from_json(Json::parse(*reply)), 0);
    } catch (const std::exception& e) {
      spdlog::error("task={} id={} event=bad-pool-reply error=\"{}\"", r->message.task,
                    r->message.id, e.what());
      reply.reset();
      ::kill(child_->pid(), SIGKILL);  // a child that speaks nonsense is not trusted again
    }
  }
  // The child died, or we signalled it: make sure it is gone, learn how it ended, replace it.
  if (reply) ::kill(child_->pid(), SIGKILL);  // it answered before our signal landed
  int status = child_->reap();
  stop();
  double runtime =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  Outcome o{r};
  if (terminate_signal) {
    o = outcome_of(r, TaskRun{}, terminate_signal);
  } else if (hard_limit_hit) {
    o.kind = Outcome::Kind::Failure;
    o.error = time_limit_exceeded(*r->exec.limits.hard_s);
  } else {
    o = on_child_lost(s_, r, status);
  }
  o.runtime_s = runtime;
  try {
    start();
  } catch (const std::exception& e) {
    spdlog::error("event=pool-child-start-failed error=\"{}\"", e.what());
  }
  return o;
}

Outcome on_child_lost(Worker::State& s, const RequestPtr& r, int wait_status) {
  // billiard numbers jobs from 0.
  std::string text = "Worker exited prematurely: " + human_status(wait_status) +
                     " Job: " + std::to_string(r->exec.job - 1) + ".";
  int deliveries = r->message.deliveries + 1;
  spdlog::error("task={} id={} event=worker-lost deliveries={} reason=\"{}\"", r->message.task,
                r->message.id, deliveries, text);
  // A crash may be transient (the OOM killer, a bad node): the message goes back to its queue
  // with its delivery count raised, as Celery's task_reject_on_worker_lost does, until it has
  // killed max_deliveries children — then it is a poison message, as in the threads pool.
  if (s.options.max_deliveries > 0 && deliveries < s.options.max_deliveries) {
    Outcome o{r, Outcome::Kind::Rejected};
    o.requeue = true;
    o.died_running = true;
    return o;
  }
  Outcome o{r, Outcome::Kind::Failure};
  o.error = {"WorkerLostError", "billiard.exceptions", Json::array({text})};
  if (s.options.max_deliveries > 0) {
    o.dead_letter_reason = "delivered " + std::to_string(deliveries) +
                           " times without completing: " + text;
  }
  return o;  // no traceback: stored as null, as Celery's main process stores it
}

// --- child side ----------------------------------------------------------------------------

int run_pool_child(int fd, const TaskRegistry& registry) {
  // Die with the worker, even if it is SIGKILLed; if it died before this line, leave now.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (const char* parent = std::getenv(kParentEnv); parent && std::atoi(parent) != ::getppid()) {
    return 1;
  }
  static CancelFlag cancel;
  g_cancel = &cancel;
  struct sigaction sa {};
  sa.sa_sigaction = on_soft_limit;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGUSR1, &sa, nullptr);

  while (auto frame = read_frame(fd)) {
    Json job = Json::parse(*frame);
    int n = job.at("job").get<int>();
    TaskRun run;
    try {
      celery::TaskMessage m = celery::decode_task_message(job.at("message").get<std::string>());
      m.redelivered = job.value("redelivered", false);
      const RegisteredTask* task = registry.find(m.task);
      if (!task) {
        run.kind = TaskRun::Kind::Failure;
        run.error = {"NotRegistered", "celery.exceptions", Json::array({m.task})};
      } else {
        cancel.clear();
        g_current_job = n;
        run = run_task(*task, m, job.value("hostname", ""), cancel);
        g_current_job = 0;
      }
    } catch (const std::exception& e) {
      run.kind = TaskRun::Kind::Failure;
      run.error = exception_from(e);
    }
    if (!write_frame(fd, task_run_to_json(run, n).dump())) break;
  }
  return 0;
}

}  // namespace celeriac::worker
