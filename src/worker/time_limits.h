// Internal to worker/: stopping running tasks from outside, as Celery does.
//
//  * Time limits. Each task gets a soft and a hard limit when it starts: the message's
//    `timelimit` header ([hard, soft], as Celery's amqp.py sends it) first, then a limit set by
//    the `time_limit` remote-control command, then the task's TaskOptions, then the worker's
//    --time-limit / --soft-time-limit.
//    Soft: the task's cancel flag is set (process pool: SIGUSR1 to the child, whose handler
//    sets it); ctx.check_cancelled() then throws SoftTimeLimitExceeded, which ends the task in
//    FAILURE unless the task catches it.
//    Hard: FAILURE TimeLimitExceeded(<hard>) with a null traceback, as Celery's main process
//    stores it. Process pool: the child is SIGKILLed and replaced. Threads pool: a thread cannot
//    be stopped safely, so it is abandoned (its eventual result dropped) and a fresh executor
//    thread takes its place; the stuck thread keeps its CPU and memory until it returns.
//  * revoke(terminate=True): REVOKED "terminated" and task-revoked{terminated, signum}.
//    Process pool: the signal (default SIGTERM) goes to the child running the task, which is
//    replaced. Threads pool: the cancel flag is set and the thread abandoned as above.
//
// One thread (time_limit_loop) watches the deadlines of all running tasks, so executors,
// heartbeats and remote control never wait on a task.
#pragma once

#include <string>

#include "worker/run_task.h"
#include "worker/worker_state.h"

namespace celeriac::worker {

// The limits a task runs with (see above for the order). Values <= 0 mean none, as Celery's
// `soft_time_limit or task.soft_time_limit` treats 0.
TimeLimits effective_limits(const celery::TaskMessage& message, const TaskOptions& task,
                            const std::optional<TimeLimits>& remote, const WorkerOptions& worker);

// Called by the executor thread as it takes `r` (mutex held): fixes its limits and job number.
void begin_execution_locked(Worker::State& s, const RequestPtr& r);

// The time-limit thread: runs until the worker stops and no executor is left.
void time_limit_loop(Worker::State& s);

// revoke(terminate=True) for a running request (mutex held). Returns false when the request
// is not running any more (finished or finishing), as Celery answers "tasks unknown".
bool terminate_locked(Worker::State& s, const RequestPtr& r, int signum);

// How a finished run becomes an outcome: a request that was terminated is REVOKED whatever
// the task returned, as Celery records the termination, not the job's late result.
Outcome outcome_of(const RequestPtr& r, TaskRun run, int terminate_signal);

// "SIGTERM", "TERM", "sigkill", "9" -> number, as Celery's signals.signum; 0 if unknown.
int signal_number(const std::string& name);
// 6 -> "SIGABRT", as Python's signal names (billiard's human_status).
std::string signal_name(int signum);

// A hard limit's exception as Celery stores it: TimeLimitExceeded(<hard>) from billiard.
celery::ExceptionInfo time_limit_exceeded(double hard_s);

}  // namespace celeriac::worker
