// The process pool (--pool processes, Celery's "prefork"): each executor thread of the worker
// drives one child process over a socketpair. The parent keeps consuming, writing results,
// sending heartbeats and answering remote control; only task code runs in children, so a task
// stuck in native code can be killed (hard time limit, revoke with terminate) and a task that
// crashes (abort, segfault) takes down its child, never the worker.
//
// How children start: the worker re-executes its own binary in child mode (posix_spawn of
// WorkerOptions::pool_child_argv, normally /proc/self/exe pool-child ...) rather than forking.
// By the time a child is needed the worker runs several threads; fork() would copy the memory
// of all of them but only the calling thread, so a lock another thread held (malloc's, spdlog's,
// a Redis connection's) would stay locked forever in the child. A zygote forked before any
// thread would avoid that too, but only shares what was loaded before it: model weights are
// memory-mapped files, whose pages the kernel shares between any processes that map them, so
// re-exec loses nothing there and keeps the child a clean, single-threaded process.
// posix_spawn closes every descriptor but the pool socket (fd 3): children never hold the
// parent's Redis connections; they need none (the parent publishes and stores everything).
//
// Protocol on the socket: frames of a 4-byte little-endian length and a JSON text.
//   parent -> child  {"job": n, "hostname": node, "message": <task message envelope>,
//                     "redelivered": bool}
//   child -> parent  {"job": n, "kind": "success"|"failure"|"retry"|"rejected", "value",
//                     "error", "traceback", "countdown", "requeue", "reason", "runtime"}
// Soft time limit: the parent queues SIGUSR1 with the job number (sigqueue); the child's
// handler sets the task's cancel flag if that job is still running.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "worker/run_task.h"
#include "worker/worker_state.h"

namespace celeriac::worker {

// --- frames (both sides) ---
// Writes one frame; false if the peer is gone. Never raises SIGPIPE.
bool write_frame(int fd, const std::string& payload);
// Reads one frame; nullopt on end of file or error (the peer died).
std::optional<std::string> read_frame(int fd);

// --- TaskRun <-> JSON (the reply frame) ---
celery::Json task_run_to_json(const TaskRun& run, int job);
TaskRun task_run_from_json(const celery::Json& reply);

// --- parent side ---
class PoolChild {
 public:
  // Starts `argv` with the pool socket as fd 3, an empty signal mask, default signal actions
  // and its own process group (a Ctrl-C or killpg aimed at the worker reaches the worker,
  // which decides what happens to running tasks). Throws std::system_error.
  static std::unique_ptr<PoolChild> spawn(const std::vector<std::string>& argv);
  // Closes the socket (an idle child exits on end of file) and reaps the child.
  ~PoolChild();
  PoolChild(const PoolChild&) = delete;
  PoolChild& operator=(const PoolChild&) = delete;

  pid_t pid() const { return pid_; }
  int fd() const { return fd_; }
  // Waits for the child to exit and returns its wait status (see waitpid).
  int reap();

 private:
  PoolChild(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  pid_t pid_;
  int fd_;
  bool reaped_ = false;
};

// One executor thread's child. The child starts with the executor (so the first task does
// not wait for it) and is replaced at once when it dies or is killed.
class ChildSlot {
 public:
  explicit ChildSlot(Worker::State& s);
  ~ChildSlot();  // stops the child
  // Runs `r` in the child. Called by the executor thread without the mutex.
  Outcome run(const RequestPtr& r);

 private:
  void start();
  void stop();
  Worker::State& s_;
  std::unique_ptr<PoolChild> child_;
};

// A child died while running `r`, not killed by us (abort, segfault, OOM killer, exit).
// Stores FAILURE WorkerLostError("Worker exited prematurely: signal 6 (SIGABRT) Job: 3.") as
// Celery's prefork pool does, with a null traceback; the message is acked. The one place to
// extend with delivery counting for poison messages.
Outcome on_child_lost(Worker::State& s, const RequestPtr& r, int wait_status);

// --- child side ---
// Serves jobs on `fd` until the parent closes it. Returns the process exit code.
int run_pool_child(int fd, const TaskRegistry& registry);

}  // namespace celeriac::worker
