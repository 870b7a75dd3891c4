// The worker runtime (see worker.h for the thread layout).
#include "worker/worker.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <regex>
#include <chrono>
#include <random>
#include <thread>

#include "backend/result_backend.h"
#include "broker/transport.h"
#include "celery/codec.h"
#include "worker/process_pool.h"
#include "worker/run_task.h"
#include "worker/time_limits.h"
#include "worker/worker_state.h"

namespace celeriac::worker {
namespace {

using celery::Json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxRevoked = 50000;  // as Celery's in-memory revoked set
constexpr int kMaxReserveBatch = 256;
constexpr size_t kMaxWriterBatch = 512;
constexpr size_t kMaxPendingOutcomes = 4 * kMaxWriterBatch;

// Backoff with jitter for Redis outages: 100 ms doubling to 10 s.
class Backoff {
 public:
  void wait(const std::atomic<bool>& stopping) {
    std::uniform_int_distribution<int> jitter(0, delay_ms_ / 2);
    int ms = delay_ms_ + jitter(rng_);
    for (int slept = 0; slept < ms && !stopping; slept += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50, ms - slept)));
    }
    delay_ms_ = std::min(delay_ms_ * 2, 10000);
  }
  void reset() { delay_ms_ = 100; }

 private:
  int delay_ms_ = 100;
  std::mt19937 rng_{std::random_device{}()};
};

Json children_of(const std::vector<std::string>& ids) {
  Json children = Json::array();
  for (const auto& id : ids) children.push_back(Json::array({Json::array({id, nullptr}), nullptr}));
  return children;
}

}  // namespace

void Worker::State::add_revoked_locked(const std::string& id) {
  if (revoked.insert(id).second) {
    revoked_order.push_back(id);
    if (revoked_order.size() > kMaxRevoked) {
      revoked.erase(revoked_order.front());
      revoked_order.pop_front();
    }
  }
}

void Worker::State::push_event_locked(const std::string& type, Json fields) {
  if (!events_enabled.load()) return;
  pending_events.push_back(make_event(type, hostname, clock, fields));
  writer_cv.notify_one();
}

std::string resolve_hostname(const std::string& pattern) {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  std::string full = host;
  std::string shortname = full.substr(0, full.find('.'));
  std::string name = pattern.empty() ? "celeriac@%h" : pattern;
  if (name.find('@') == std::string::npos) name = name + "@%h";
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '%' && i + 1 < name.size()) {
      char c = name[i + 1];
      if (c == 'h') { out += full; ++i; continue; }
      if (c == 'n') { out += shortname; ++i; continue; }
      if (c == 'd') { out += full.find('.') == std::string::npos ? "" : full.substr(full.find('.') + 1); ++i; continue; }
    }
    out.push_back(name[i]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Worker internals, as free functions over State so each thread's loop reads top to bottom.

void mark_alive(Worker::State& s, broker::Transport& t);

namespace {

void emit_received(Worker::State& s, const Request& r) {
  const auto& m = r.message;
  s.push_event_locked("task-received",
                      {{"uuid", m.id},
                       {"name", m.task},
                       {"args", m.argsrepr},
                       {"kwargs", m.kwargsrepr},
                       {"root_id", m.root_id},
                       {"parent_id", m.parent_id ? Json(*m.parent_id) : Json()},
                       {"retries", m.retries},
                       {"eta", m.eta ? Json(celery::format_iso8601_utc(*m.eta)) : Json()},
                       {"expires", m.expires ? Json(celery::format_iso8601_utc(*m.expires)) : Json()}});
}

}  // namespace

// A finished request frees its prefetch slot at once; its message stays in `unacked` until
// the writer has stored the result and acked, so the slot's reuse risks nothing.
void finish_locked(Worker::State& s, Outcome outcome) {
  // Wake the writer only when it may be asleep (it sleeps only on an empty queue), and the
  // consumer only when it waits for room: futex wakes per task would cost more than the task.
  if (s.outcomes.empty()) s.writer_cv.notify_one();
  s.outcomes.push_back(std::move(outcome));
  s.held--;
  if (s.consumer_waiting) s.capacity_cv.notify_one();
}

namespace {

// Decides what to do with one freshly reserved message. Called with the mutex held.
void accept_delivery_locked(Worker::State& s, RequestPtr r) {
  const auto& m = r->message;
  s.held++;
  if (!m.delivery_tag.empty()) s.held_tags.insert(m.delivery_tag);
  if (!r->task) {
    spdlog::error("task={} id={} event=unregistered queue={} reason=\"task not registered\"",
                  m.task, m.id, r->queue);
    finish_locked(s, {r, Outcome::Kind::NotRegistered});
    return;
  }
  double now = celery::unix_now();
  // As Celery 5.7's strategy: a revoked or expired task is discarded before task-received.
  if (s.is_revoked_locked(m.id)) {
    finish_locked(s, {.request = r, .kind = Outcome::Kind::Revoked, .revoke_reason = "revoked"});
    return;
  }
  if (m.expires && *m.expires <= now) {
    finish_locked(s, {.request = r, .kind = Outcome::Kind::Revoked, .revoke_reason = "expired"});
    return;
  }
  emit_received(s, *r);
  if (m.eta && *m.eta > now) {
    s.scheduled.emplace(*m.eta, r);
    return;
  }
  s.ready.push_back(r);  // the caller wakes executors after unlocking
}

// Returns whether anything became ready (the caller wakes executors after unlocking).
bool move_due_scheduled_locked(Worker::State& s, double now) {
  bool moved = false;
  while (!s.scheduled.empty() && s.scheduled.begin()->first <= now) {
    s.ready.push_back(s.scheduled.begin()->second);
    s.scheduled.erase(s.scheduled.begin());
    moved = true;
  }
  return moved;
}

// A message whose worker died running it max_deliveries times: it fails with Celery's
// WorkerLostError (what a Python client knows for "the worker process died") and is filed in
// the dead-letter list when acked, so it never loops.
Outcome poison_outcome(Worker::State& s, RequestPtr r, std::string envelope) {
  const auto& m = r->message;
  std::string reason = fmt::format(
      "delivered {} times without completing: the worker running it died each time",
      m.deliveries);
  spdlog::error("task={} id={} event=poison-message queue={} deliveries={} reason=\"{}\"", m.task,
                m.id, r->queue, m.deliveries, reason);
  Outcome o{.request = r, .kind = Outcome::Kind::Failure};
  o.error = {"WorkerLostError", "billiard.exceptions", Json::array({"Task " + reason})};
  o.traceback = short_traceback(r->message, o.error, s.hostname);
  o.dead_letter_reason = std::move(reason);
  o.envelope = std::move(envelope);
  return o;
}

// Socket timeout of the worker's broker connections (--broker-socket-timeout).
redis::ConnectOptions broker_connect_options(const WorkerOptions& options) {
  redis::ConnectOptions connect;
  connect.command_timeout =
      std::chrono::milliseconds(static_cast<long>(options.broker_socket_timeout_s * 1000));
  return connect;
}

void consumer_loop(Worker::State& s) {
  broker::TransportOptions topts;
  topts.dead_letter_key = s.options.dead_letter_key;
  topts.worker_name = s.hostname;
  topts.connect = broker_connect_options(s.options);
  std::optional<broker::Transport> transport;
  Backoff backoff;
  std::vector<std::string> queues;
  uint64_t queues_version = ~0ull;
  int idle_ms = 0;
  size_t wait_rotation = 0;
  bool recovered_own = false;
  bool check_held = false;  // after an error: did a reservation reach Redis but not us?

  while (!s.stopping) {
    try {
      bool redeclare = false;
      {
        std::lock_guard lock(s.mutex);
        if (queues_version != s.queues_version) {
          queues = s.queues;
          queues_version = s.queues_version;
          redeclare = true;
        }
      }
      if (!transport) {
        transport.emplace(redis::Url::parse(s.options.broker_url), topts);
        redeclare = true;
        backoff.reset();
        if (!recovered_own) {
          // A previous process with this node name died holding messages: they go back to
          // their queues (those it was running counted as a delivery) before we take new ones.
          int n = transport->recover_worker(s.hostname);
          if (n > 0) spdlog::warn("event=recovered-own node={} count={}", s.hostname, n);
          recovered_own = true;
          // Alive before the first reservation, so no peer takes us for our dead predecessor.
          mark_alive(s, *transport);
        }
      }
      if (redeclare) {
        for (const auto& q : queues) transport->declare_queue(q);
      }
      if (check_held) {
        // A reserve whose reply never came, or deliveries dropped by a failed dead-lettering,
        // left messages recorded as ours that no one here knows of: no one else would ever
        // restore them while this node lives. Only this thread reserves, so the snapshot
        // misses nothing taken since.
        std::unordered_set<std::string> known;
        {
          std::lock_guard lock(s.mutex);
          known = s.held_tags;
        }
        const int n = transport->requeue_unknown_held(known);
        if (n > 0)
          spdlog::warn("event=held-requeued count={} reason=\"reserved, never received\"", n);
        check_held = false;
      }
      int free_slots;
      bool due = false;
      {
        std::lock_guard lock(s.mutex);
        due = move_due_scheduled_locked(s, celery::unix_now());
        free_slots = s.prefetch_limit_locked() - s.held;
        // Results not yet written also hold memory and unacked entries: bound them too.
        if (s.outcomes.size() >= kMaxPendingOutcomes) free_slots = 0;
      }
      // Notify after unlocking: a woken executor would otherwise block at once on our mutex.
      if (due) s.ready_cv.notify_all();
      int got = 0;
      if (free_slots > 0 && !queues.empty()) {
        auto result = transport->reserve(broker::consume_order(queues),
                                         std::min(free_slots, kMaxReserveBatch));
        for (const auto& d : result.dead_letters) {
          spdlog::warn("event=dead-letter queue={} reason=\"{}\"", d.queue, d.reason);
        }
        got = static_cast<int>(result.deliveries.size());
        std::vector<RequestPtr> accepted;
        std::vector<Outcome> poison;
        accepted.reserve(result.deliveries.size());
        for (auto& d : result.deliveries) {
          auto r = std::make_shared<Request>();
          try {
            r->message = celery::decode_task_message(d.envelope);
          } catch (const std::exception& e) {
            // Anything that cannot be decoded leaves the queue with its reason, so a poison
            // message is seen once, never looped.
            std::string tag = celery::envelope_delivery_tag(d.envelope);
            spdlog::warn("event=dead-letter queue={} delivery_tag={} reason=\"{}\"", d.queue, tag,
                         e.what());
            transport->dead_letter(d.queue, d.envelope, tag, e.what());
            continue;
          }
          r->queue = d.queue;
          r->task = s.registry.find(r->message.task);
          r->received_at = celery::unix_now();
          if (s.options.max_deliveries > 0 && r->message.deliveries >= s.options.max_deliveries) {
            poison.push_back(poison_outcome(s, std::move(r), std::move(d.envelope)));
            continue;
          }
          spdlog::debug("task={} id={} event=received queue={}", r->message.task, r->message.id,
                        d.queue);
          accepted.push_back(std::move(r));
        }
        if (!poison.empty()) {
          std::lock_guard lock(s.mutex);
          for (auto& o : poison) {
            s.held++;
            const std::string& tag = o.request->message.delivery_tag;
            if (!tag.empty()) s.held_tags.insert(tag);
            finish_locked(s, std::move(o));
          }
          poison.clear();
        }
        if (!accepted.empty()) {
          {
            std::lock_guard lock(s.mutex);
            for (auto& r : accepted) accept_delivery_locked(s, std::move(r));
          }
          s.ready_cv.notify_all();
        }
        // Round robin over queues, as kombu rotates the queue it just consumed from.
        if (got > 0 && queues.size() > 1) std::rotate(queues.begin(), queues.begin() + 1, queues.end());
      }
      if (got > 0) {
        idle_ms = 0;
        continue;
      }
      // Idle with room: block on the first queue's main list (most traffic lands there) so a
      // new message wakes us at once; other lists are polled each time the wait times out.
      if (free_slots > 0 && !queues.empty()) {
        double timeout_s = s.options.idle_poll_max_ms / 1000.0;
        {
          std::lock_guard lock(s.mutex);
          if (!s.scheduled.empty()) {
            timeout_s = std::min(timeout_s, s.scheduled.begin()->first - celery::unix_now());
          }
        }
        std::string key = queues[wait_rotation++ % queues.size()];
        if (timeout_s > 0.002 && transport->wait(key, timeout_s)) continue;
        if (timeout_s > 0.002 && transport->blocking_wait()) continue;  // timed out: poll again
      }
      // Nothing to take (or no room): wait for room, the next ETA, or the next poll.
      idle_ms = free_slots > 0 ? std::clamp(idle_ms * 2, 1, s.options.idle_poll_max_ms)
                               : s.options.idle_poll_max_ms;
      std::unique_lock lock(s.mutex);
      if (free_slots > 0 && !s.ready.empty()) continue;  // work arrived meanwhile: no sleep
      auto wait = std::chrono::milliseconds(idle_ms);
      if (!s.scheduled.empty()) {
        double until = s.scheduled.begin()->first - celery::unix_now();
        wait = std::min(wait, std::chrono::milliseconds(std::max(0L, static_cast<long>(until * 1000))));
      }
      s.consumer_waiting = true;
      s.capacity_cv.wait_for(lock, wait, [&] {
        return s.stopping.load() ||
               (free_slots <= 0 && s.prefetch_limit_locked() > s.held &&
                s.outcomes.size() < kMaxPendingOutcomes);
      });
      s.consumer_waiting = false;
    } catch (const redis::ConnectionError& e) {
      spdlog::error("event=broker-unreachable error=\"{}\"", e.what());
      transport.reset();
      check_held = true;
      backoff.wait(s.stopping);
    } catch (const std::exception& e) {
      spdlog::error("event=consumer-error error=\"{}\"", e.what());
      check_held = true;
      backoff.wait(s.stopping);
    }
  }
  // A wait that returned a message just as the stop was asked for left it in the staging list,
  // where no one reserves it until a worker of this name starts again: back to its queue.
  try {
    if (!transport) transport.emplace(redis::Url::parse(s.options.broker_url), topts);
    const int returned = transport->return_staged();
    if (returned > 0) spdlog::info("event=staged-returned count={}", returned);
  } catch (const std::exception& e) {
    spdlog::error("event=staged-return-failed error=\"{}\"", e.what());
  }
}

// Takes the next runnable request from `ready`, or nullptr when it is empty. Revoked or expired
// requests are finished on the way (Celery checks again before running); a rate-limited task
// waits for its token here, with the lock released.
RequestPtr take_ready_locked(Worker::State& s, std::unique_lock<std::mutex>& lock) {
  while (!s.ready.empty()) {
    RequestPtr r = s.ready.front();
    s.ready.pop_front();
    const auto& m = r->message;
    double now = celery::unix_now();
    if (s.is_revoked_locked(m.id) || (m.expires && *m.expires <= now)) {
      finish_locked(s, {.request = r, .kind = Outcome::Kind::Revoked,
                        .revoke_reason = s.is_revoked_locked(m.id) ? "revoked" : "expired"});
      continue;
    }
    // Rate limit (token bucket per task name, as Celery's).
    if (auto rl = s.rate_limits.find(m.task); rl != s.rate_limits.end() && rl->second.per_second > 0) {
      auto& b = rl->second;
      b.tokens = std::min(1.0, b.tokens + (now - b.updated_at) * b.per_second);
      b.updated_at = now;
      b.tokens -= 1.0;  // this request's token, possibly borrowed from the future
      if (b.tokens < 0) {
        double wait_s = -b.tokens / b.per_second;
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
        lock.lock();
        now = celery::unix_now();
      }
    }
    r->started_at = now;
    begin_execution_locked(s, r);  // time limits, job number (time_limits.h)
    s.active[m.id] = r;
    s.push_event_locked("task-started", {{"uuid", m.id}});
    return r;
  }
  return nullptr;
}

// Tasks that on average finish in microseconds are taken several at a time, so that the
// hand-off through the shared lock is paid once per batch; anything slower (inference) is
// taken one by one, so no task waits behind another while an executor is free.
constexpr double kFastTaskS = 0.0005;
constexpr size_t kMaxExecutorBatch = 16;

bool is_fast_locked(const Worker::State& s, const RequestPtr& r) {
  auto it = s.average_runtime_s.find(r->message.task);
  return it != s.average_runtime_s.end() && it->second < kFastTaskS &&
         !s.rate_limits.count(r->message.task);
}

// Threads pool: the task runs on this thread.
Outcome run_request(Worker::State& s, const RequestPtr& r) {
  TaskRun run = run_task(*r->task, r->message, s.hostname, r->cancelled);
  return outcome_of(r, std::move(run), 0);
}

// Records in celeriac.running.<node> which messages this executor is about to run: if the
// process dies while running them, its restorer raises exactly their delivery counts (a poison
// message is caught, innocent prefetched ones are not). The task starts as soon as the command
// is written to the socket — from then on the kernel delivers it even if we crash — and its
// reply is read before the next mark, so marking costs a write, not a round trip. Tasks with
// acks_late=false are acked in the same write, at their start, as Celery acks by default.
// Without Redis the tasks still run (a crash then is not counted).
class RunningMarker {
 public:
  RunningMarker(Worker::State& s, int executor_id)
      : s_(s), key_(broker::Transport::running_key(s.hostname)), field_(std::to_string(executor_id)) {}

  void mark(const std::vector<RequestPtr>& batch) {
    std::string tags;
    std::vector<std::string> early_acks;
    for (const auto& r : batch) {
      const std::string& tag = r->message.delivery_tag;
      if (tag.empty()) continue;
      if (!tags.empty()) tags += ' ';
      tags += tag;
      if (r->task && !r->task->options.acks_late) early_acks.push_back(tag);
    }
    if (tags.empty()) return;
    auto now = Clock::now();
    if (!transport_ && now < retry_at_) return;
    try {
      if (!transport_) {
        broker::TransportOptions topts;
        topts.worker_name = s_.hostname;
        transport_.emplace(redis::Url::parse(s_.options.broker_url), topts);
      }
      auto& conn = transport_->connection();
      for (; unread_ > 0; --unread_) {
        auto reply = conn.read_reply(std::chrono::seconds(5));
        if (!reply) throw redis::ConnectionError("no reply to the running mark");
        reply->ok();
      }
      conn.append({"HSET", key_, field_, tags});
      ++unread_;
      for (const auto& c : transport_->ack_commands(early_acks)) {
        conn.append(c);
        ++unread_;
      }
      conn.flush();
    } catch (const std::exception& e) {
      spdlog::warn("event=running-mark-failed error=\"{}\"", e.what());
      transport_.reset();
      unread_ = 0;
      retry_at_ = now + std::chrono::seconds(1);
    }
  }

 private:
  Worker::State& s_;
  std::string key_, field_;
  std::optional<broker::Transport> transport_;
  int unread_ = 0;  // replies of the previous mark, read before the next one
  Clock::time_point retry_at_{};
};

// Returns true when the thread was abandoned (time_limits.h): it is no longer counted as an
// executor and must leave without touching the pool's books.
bool executor_loop(Worker::State& s, int executor_id) {
  std::vector<Outcome> finished;  // handed over together with taking the next requests
  std::vector<RequestPtr> batch;
  RunningMarker marker(s, executor_id);
  std::optional<ChildSlot> child;  // process pool: this executor's child process
  if (s.options.pool == PoolKind::Processes) child.emplace(s);
  while (true) {
    batch.clear();
    {
      std::unique_lock lock(s.mutex);
      for (auto& o : finished) {
        auto& avg = s.average_runtime_s[o.request->message.task];
        avg = avg == 0 ? o.runtime_s : 0.9 * avg + 0.1 * o.runtime_s;
        // Only if it is still ours: a retry of the same id may be running elsewhere by now.
        if (auto it = s.active.find(o.request->message.id);
            it != s.active.end() && it->second == o.request) {
          s.active.erase(it);
        }
        finish_locked(s, std::move(o));
      }
      finished.clear();
      // pool_shrink: surplus executors leave when idle.
      if (s.running_executors > s.pool_size.load()) return false;
      s.ready_cv.wait(lock, [&] {
        return s.stopping.load() || !s.ready.empty() || s.running_executors > s.pool_size.load();
      });
      if (s.stopping) return false;  // unstarted requests are requeued by the shutdown code
      if (s.ready.empty()) return false;  // shrunk
      RequestPtr r = take_ready_locked(s, lock);
      if (!r) continue;
      batch.push_back(r);
      while (batch.size() < kMaxExecutorBatch && !s.ready.empty() && is_fast_locked(s, r) &&
             is_fast_locked(s, s.ready.front())) {
        RequestPtr next = take_ready_locked(s, lock);
        if (!next) break;
        batch.push_back(next);
      }
    }
    marker.mark(batch);
    for (size_t i = 0; i < batch.size(); ++i) {
      const RequestPtr& r = batch[i];
      std::optional<Outcome> o;
      // (A request waiting behind others in a batch can be terminated before it starts.)
      if (!r->exec.abandoned) o = child ? child->run(r) : run_request(s, r);
      if (r->exec.abandoned) {
        // Its outcome was recorded without us and this thread replaced: what else we took
        // goes back to the front, and the thread leaves.
        std::lock_guard lock(s.mutex);
        for (size_t j = batch.size(); j-- > i + 1;) {
          s.active.erase(batch[j]->message.id);
          s.ready.push_front(batch[j]);
        }
        for (auto& f : finished) {
          if (auto it = s.active.find(f.request->message.id);
              it != s.active.end() && it->second == f.request) {
            s.active.erase(it);
          }
          finish_locked(s, std::move(f));
        }
        if (i + 1 < batch.size()) s.ready_cv.notify_all();
        return true;
      }
      finished.push_back(std::move(*o));
    }
  }
}

// --- writer -----------------------------------------------------------------------------------

struct Publish {
  std::string queue;
  int priority;
  std::string envelope;
};

celery::TaskMessage retry_message(const celery::TaskMessage& m, double countdown_s,
                                  const std::string& origin) {
  celery::TaskMessage next = m;
  next.retries = m.retries + 1;
  next.eta = celery::unix_now() + countdown_s;
  next.parent_id = m.id;  // Celery's retry lists the task itself as parent (captured)
  next.delivery_tag.clear();
  next.exchange.clear();
  next.origin = origin;
  next.redelivered = false;
  next.deliveries = 0;  // a retry is a new message; its own deliveries count afresh
  return next;
}

class Writer {
 public:
  explicit Writer(Worker::State& s) : s_(s) {}

  void run() {
    Backoff backoff;
    std::deque<Outcome> batch;
    std::vector<Json> events;
    while (true) {
      if (batch.empty() && events.empty()) {
        std::unique_lock lock(s_.mutex);
        s_.writer_cv.wait(lock, [&] {
          return !s_.outcomes.empty() || !s_.pending_events.empty() ||
                 (s_.stopping && s_.running_executors == 0);
        });
        if (s_.outcomes.empty() && s_.pending_events.empty()) return;
        while (!s_.outcomes.empty() && batch.size() < kMaxWriterBatch) {
          batch.push_back(std::move(s_.outcomes.front()));
          s_.outcomes.pop_front();
        }
        events.swap(s_.pending_events);
      }
      try {
        connect();
        write(batch, events);
        backoff.reset();
        batch.clear();
        events.clear();
      } catch (const redis::ConnectionError& e) {
        // Results are kept and written once Redis is back; nothing is lost or acked early.
        spdlog::error("event=backend-unreachable pending={} error=\"{}\"", batch.size(), e.what());
        transport_.reset();
        backend_.reset();
        backoff.wait(never_stop_);
      } catch (const std::exception& e) {
        spdlog::error("event=writer-error error=\"{}\"", e.what());
        backoff.wait(never_stop_);
      }
    }
  }

 private:
  void run_pipeline(const std::vector<redis::Args>& cmds) {
    if (cmds.empty()) return;
    for (const auto& r : transport_->connection().pipeline(cmds)) r.ok();
  }

  void connect() {
    broker_url_ = redis::Url::parse(s_.options.broker_url);
    backend_url_ = redis::Url::parse(s_.options.backend_url);
    shared_connection_ = broker_url_.same_server(backend_url_);
    if (!transport_) {
      broker::TransportOptions topts;
      topts.dead_letter_key = s_.options.dead_letter_key;
      topts.worker_name = s_.hostname;
      topts.connect = broker_connect_options(s_.options);
      transport_.emplace(redis::Url::parse(s_.options.broker_url), topts);
    }
    if (!backend_) {
      backend_.emplace(redis::Url::parse(s_.options.backend_url),
                       backend::BackendOptions{s_.options.result_expires_s});
    }
  }

  void write(std::deque<Outcome>& batch, std::vector<Json>& events) {
    std::vector<Publish> publishes;
    std::vector<celery::ResultMeta> metas;
    std::vector<const Outcome*> chord_members;
    std::vector<std::string> tags;
    std::vector<std::pair<std::string, bool>> requeue_tags;  // tag, died running
    for (const Outcome& o : batch) {
      const auto& m = o.request->message;
      if (o.kind == Outcome::Kind::Rejected && o.requeue) {
        if (!m.delivery_tag.empty()) requeue_tags.emplace_back(m.delivery_tag, o.died_running);
      } else if (!m.delivery_tag.empty()) {
        tags.push_back(m.delivery_tag);
      }
      std::vector<std::string> child_ids;
      plan_children(o, publishes, child_ids);
      if (auto meta = meta_for(o, child_ids)) metas.push_back(std::move(*meta));
      if (m.chord.is_object() && m.group &&
          (o.kind == Outcome::Kind::Success || o.kind == Outcome::Kind::Failure)) {
        chord_members.push_back(&o);
      }
      add_outcome_event(o, events);
      log_outcome(o);
    }
    // Order matters: children before results (a SUCCESS never names a child that does not
    // exist), results before acks (an acked task always has its result). When broker and
    // backend share a server, all of it goes in one pipelined round trip.
    std::vector<redis::Args> cmds;
    for (const auto& p : publishes) {
      cmds.push_back({"LPUSH", broker::priority_key(p.queue, p.priority), p.envelope});
    }
    if (!metas.empty()) {
      redis::Args store =
          backend::ResultBackend::store_command(metas, s_.options.result_expires_s);
      if (shared_connection_) {
        bool other_db = backend_url_.db != broker_url_.db;
        if (other_db) cmds.push_back({"SELECT", std::to_string(backend_url_.db)});
        cmds.push_back(std::move(store));
        if (other_db) cmds.push_back({"SELECT", std::to_string(broker_url_.db)});
      } else {
        run_pipeline(cmds);
        cmds.clear();
        backend_->connection().command(store).ok();
      }
    }
    if (!chord_members.empty()) {
      run_pipeline(cmds);
      cmds.clear();
      for (const Outcome* o : chord_members) finish_chord_member(*o, events);
    }
    for (const Outcome& o : batch) {
      if (o.dead_letter_reason.empty()) continue;
      // Rejected messages keep no envelope; the re-encoded message is the same task.
      cmds.push_back(transport_->dead_letter_command(
          o.request->queue,
          o.envelope.empty() ? celery::encode_task_message(o.request->message) : o.envelope,
          o.dead_letter_reason));
    }
    for (auto& c : transport_->ack_commands(tags)) cmds.push_back(std::move(c));
    if (!events.empty()) {
      Json body = events.size() == 1 ? events[0] : Json(events);
      std::string rk = events.size() == 1 ? event_routing_key(events[0]["type"]) : "task.multi";
      cmds.push_back({"PUBLISH", broker::fanout_channel(transport_->db(), "celeryev", rk),
                      event_envelope(body, s_.hostname, rk)});
    }
    run_pipeline(cmds);
    for (const auto& [tag, died] : requeue_tags) transport_->requeue(tag, false, "", died);
    std::lock_guard lock(s_.mutex);
    for (const Outcome& o : batch) {
      s_.held_tags.erase(o.request->message.delivery_tag);  // acked or requeued: answered
      s_.processed++;
      if (o.request->task) s_.total_by_task[o.request->message.task]++;
    }
    s_.capacity_cv.notify_one();
  }

  void add_publish(celery::TaskMessage msg, std::vector<Publish>& out) {
    if (msg.routing_key.empty()) msg.routing_key = "celery";
    if (msg.origin.empty()) msg.origin = s_.hostname;
    out.push_back({msg.routing_key, msg.priority, celery::encode_task_message(msg)});
  }

  // Messages this outcome sends: the retry, link callbacks, the next chain step, errbacks.
  void plan_children(const Outcome& o, std::vector<Publish>& out, std::vector<std::string>& ids) {
    const auto& m = o.request->message;
    if (o.kind == Outcome::Kind::Retry) {
      add_publish(retry_message(m, o.retry_countdown_s, s_.hostname), out);
      return;
    }
    if (o.kind == Outcome::Kind::Success) {
      if (m.callbacks.is_array()) {
        for (const auto& sig : m.callbacks) send_signature(sig, &o.value, m, out, ids);
      }
      if (m.chain.is_array() && !m.chain.empty()) {
        Json rest = m.chain;
        Json next = rest.back();
        rest.erase(rest.size() - 1);
        auto msg = celery::message_from_signature(next, &o.value, &m);
        if (!rest.empty()) msg.chain = rest;
        ids.push_back(msg.id);
        add_publish(std::move(msg), out);
      }
    }
    if ((o.kind == Outcome::Kind::Failure || o.kind == Outcome::Kind::NotRegistered) &&
        m.errbacks.is_array()) {
      // Old-style errbacks: called with the failed task's id as the first argument.
      Json id = m.id;
      for (const auto& sig : m.errbacks) send_signature(sig, &id, m, out, ids);
    }
  }

  void send_signature(const Json& sig, const Json* value, const celery::TaskMessage& parent,
                      std::vector<Publish>& out, std::vector<std::string>& ids) {
    try {
      std::string type = sig.value("subtask_type", Json()).is_string()
                             ? sig["subtask_type"].get<std::string>()
                             : "";
      if (type == "group") {
        // A group callback: every member gets the value.
        for (const auto& member : sig["kwargs"]["tasks"]) send_signature(member, value, parent, out, ids);
        return;
      }
      if (type == "chain") {
        Json tasks = sig["kwargs"]["tasks"];
        if (!tasks.is_array() || tasks.empty()) return;
        auto msg = celery::message_from_signature(tasks[0], value, &parent);
        Json rest = Json::array();
        for (size_t i = tasks.size(); i-- > 1;) rest.push_back(tasks[i]);  // reversed
        if (!rest.empty()) msg.chain = rest;
        ids.push_back(msg.id);
        add_publish(std::move(msg), out);
        return;
      }
      auto msg = celery::message_from_signature(sig, value, &parent);
      ids.push_back(msg.id);
      add_publish(std::move(msg), out);
    } catch (const std::exception& e) {
      spdlog::error("task={} id={} event=callback-error error=\"{}\"", parent.task, parent.id,
                    e.what());
    }
  }

  std::optional<celery::ResultMeta> meta_for(const Outcome& o, const std::vector<std::string>& child_ids) {
    const auto& m = o.request->message;
    celery::ResultMeta meta;
    meta.task_id = m.id;
    meta.group_id = m.group;
    meta.parent_id = m.parent_id;
    meta.children = children_of(child_ids);
    double now = celery::unix_now();
    switch (o.kind) {
      case Outcome::Kind::Success:
        if (m.ignore_result || (o.request->task && o.request->task->options.ignore_result)) {
          return std::nullopt;
        }
        meta.status = celery::state::kSuccess;
        meta.result = o.value;
        meta.date_done = now;
        break;
      case Outcome::Kind::Failure:
        meta.status = celery::state::kFailure;
        meta.result = o.error.to_json();
        // Failures decided by the worker, not the task (time limit, lost child), have none.
        meta.traceback = o.traceback.empty() ? Json() : Json(o.traceback);
        meta.date_done = now;
        break;
      case Outcome::Kind::Retry:
        meta.status = celery::state::kRetry;
        meta.result = o.error.to_json();
        meta.traceback = o.traceback;
        break;
      case Outcome::Kind::Revoked:
        meta.status = celery::state::kRevoked;
        meta.result = celery::ExceptionInfo{"TaskRevokedError", "celery.exceptions",
                                            Json::array({o.revoke_reason})}
                          .to_json();
        meta.date_done = now;
        break;
      case Outcome::Kind::NotRegistered:
        // As Celery stores it: FAILURE, NotRegistered(name), no traceback, no parent/group.
        meta.status = celery::state::kFailure;
        meta.result = celery::ExceptionInfo{"NotRegistered", "celery.exceptions",
                                            Json::array({m.task})}
                          .to_json();
        meta.group_id.reset();
        meta.parent_id.reset();
        meta.date_done = now;
        break;
      case Outcome::Kind::Rejected:
        return std::nullopt;  // as Celery: a rejected message leaves no result
    }
    return meta;
  }

  void finish_chord_member(const Outcome& o, std::vector<Json>& events) {
    const auto& m = o.request->message;
    bool ok = o.kind == Outcome::Kind::Success;
    auto outcome = backend_->chord_part_done(
        {*m.group, m.group_index.value_or(0), m.id, ok ? "SUCCESS" : "FAILURE",
         ok ? o.value : o.error.to_json()});
    if (!outcome.complete) return;
    Json body = m.chord;
    if (outcome.failed) {
      // The body does not run; its result records why, as Celery's ChordError does.
      std::string body_id = body.value("options", Json::object()).value("task_id", "");
      if (body_id.empty()) return;
      celery::ResultMeta meta;
      meta.task_id = body_id;
      meta.status = celery::state::kFailure;
      auto err = celery::ExceptionInfo::from_json(outcome.failed_exception);
      meta.result = celery::ExceptionInfo{
          "ChordError", "celery.exceptions",
          Json::array({"Dependency " + outcome.failed_task_id + " raised " + err.repr()})}
                        .to_json();
      meta.date_done = celery::unix_now();
      backend_->store(meta);
      return;
    }
    std::vector<Publish> out;
    std::vector<std::string> ids;
    send_signature(body, &outcome.results, m, out, ids);
    for (const auto& p : out) {
      transport_->connection().command({"LPUSH", broker::priority_key(p.queue, p.priority), p.envelope}).ok();
    }
  }

  void add_outcome_event(const Outcome& o, std::vector<Json>& events) {
    if (!s_.events_enabled) return;
    const auto& m = o.request->message;
    auto add = [&](const char* type, Json fields) {
      events.push_back(make_event(type, s_.hostname, s_.clock, fields));
    };
    switch (o.kind) {
      case Outcome::Kind::Success:
        add("task-succeeded", {{"uuid", m.id}, {"result", celery::python_repr(o.value)},
                               {"runtime", o.runtime_s}});
        break;
      case Outcome::Kind::Failure:
        add("task-failed", {{"uuid", m.id},
                            {"exception", o.error.repr()},
                            {"traceback", o.traceback.empty()
                                              ? o.error.module + "." + o.error.type + ": " +
                                                    o.error.repr() + "\n"
                                              : o.traceback}});
        break;
      case Outcome::Kind::NotRegistered:
        add("task-failed", {{"uuid", m.id}, {"exception", "NotRegistered(" + celery::python_repr(m.task) + ")"}});
        break;
      case Outcome::Kind::Retry:
        add("task-retried", {{"uuid", m.id}, {"exception", o.error.repr()}, {"traceback", o.traceback}});
        break;
      case Outcome::Kind::Rejected:
        add("task-rejected", {{"uuid", m.id}, {"requeue", o.requeue}});
        break;
      case Outcome::Kind::Revoked:
        add("task-revoked", {{"uuid", m.id}, {"terminated", o.revoke_reason == "terminated"},
                             {"signum", o.revoke_reason == "terminated" ? Json(o.signum) : Json()},
                             {"expired", o.revoke_reason == "expired"}});
        break;
    }
  }

  void log_outcome(const Outcome& o) {
    const auto& m = o.request->message;
    switch (o.kind) {
      case Outcome::Kind::Success:
        spdlog::debug("task={} id={} event=succeeded runtime_s={:.6f}", m.task, m.id, o.runtime_s);
        break;
      case Outcome::Kind::Failure:
        spdlog::warn("task={} id={} event=failed runtime_s={:.6f} exception=\"{}\"", m.task, m.id,
                     o.runtime_s, o.error.repr());
        break;
      case Outcome::Kind::Retry:
        spdlog::info("task={} id={} event=retry countdown_s={} retries={} exception=\"{}\"", m.task,
                     m.id, o.retry_countdown_s, m.retries + 1, o.error.repr());
        break;
      case Outcome::Kind::Revoked:
        spdlog::info("task={} id={} event=revoked reason={}", m.task, m.id, o.revoke_reason);
        break;
      case Outcome::Kind::Rejected:
        spdlog::warn("task={} id={} event=rejected requeue={} reason=\"{}\"", m.task, m.id,
                     o.requeue, o.dead_letter_reason);
        break;
      case Outcome::Kind::NotRegistered:
        break;  // logged when received
    }
  }

  Worker::State& s_;
  redis::Url broker_url_, backend_url_;
  bool shared_connection_ = false;
  std::optional<broker::Transport> transport_;
  std::optional<backend::ResultBackend> backend_;
  std::atomic<bool> never_stop_{false};
};

// --- control + heartbeats ---------------------------------------------------------------------

double loadavg1(int i) {
  double l[3] = {0, 0, 0};
  ::getloadavg(l, 3);
  return std::round(l[i] * 100) / 100;
}

Json worker_event_fields(Worker::State& s) {
  std::lock_guard lock(s.mutex);
  return {{"freq", s.options.heartbeat_interval_s},
          {"active", static_cast<int>(s.active.size())},
          {"processed", s.processed},
          {"loadavg", Json::array({loadavg1(0), loadavg1(1), loadavg1(2)})},
          {"sw_ident", "celeriac"},
          {"sw_ver", "0.1.0"},
          {"sw_sys", "Linux"}};
}

void publish_worker_event(Worker::State& s, broker::Transport& t, const std::string& type) {
  Json e = make_event(type, s.hostname, s.clock, worker_event_fields(s));
  std::string rk = event_routing_key(type);
  t.publish_fanout("celeryev", rk, event_envelope(e, s.hostname, rk));
}

// Whether a pidbox request is addressed to this node (destination list, or glob/regex pattern).
bool addressed_to(const Json& body, const std::string& hostname) {
  auto dest = body.value("destination", Json());
  if (dest.is_array() && !dest.empty()) {
    for (const auto& d : dest) {
      if (d.is_string() && d.get<std::string>() == hostname) return true;
    }
    return false;
  }
  auto pattern = body.value("pattern", Json());
  auto matcher = body.value("matcher", Json());
  if (pattern.is_string() && matcher.is_string()) {
    std::string p = pattern.get<std::string>();
    if (matcher.get<std::string>() == "glob") {
      // fnmatch of the whole name: * and ? only.
      std::function<bool(size_t, size_t)> match = [&](size_t i, size_t j) -> bool {
        if (i == p.size()) return j == hostname.size();
        if (p[i] == '*') return match(i + 1, j) || (j < hostname.size() && match(i, j + 1));
        if (j < hostname.size() && (p[i] == '?' || p[i] == hostname[j])) return match(i + 1, j + 1);
        return false;
      };
      return match(0, 0);
    }
    try {
      return std::regex_search(hostname, std::regex(p), std::regex_constants::match_continuous);
    } catch (const std::regex_error&) {
      return false;
    }
  }
  return true;
}

}  // namespace

// Liveness for prompt recovery: every celeriac worker is listed in celeriac.workers and keeps
// celeriac.alive.<node> fresh with each heartbeat. A listed node whose key expired died
// without cleaning up; any live worker then restores what it held (recover_worker), so a
// killed worker's tasks come back within seconds, not after kombu's one-hour visibility timeout.
const std::string kWorkersKey = "celeriac.workers";
const std::string kAlivePrefix = "celeriac.alive.";

void mark_alive(Worker::State& s, broker::Transport& t) {
  long ttl_ms = static_cast<long>(s.options.heartbeat_interval_s * 3000);
  t.connection().pipeline({{"SET", kAlivePrefix + s.hostname, "1", "PX", std::to_string(ttl_ms)},
                           {"SADD", kWorkersKey, s.hostname}});
}

void recover_dead_workers(Worker::State& s, broker::Transport& t) {
  redis::Reply nodes = t.connection().command({"SMEMBERS", kWorkersKey});
  std::vector<std::string> live;
  for (const auto& n : nodes.elements) {
    const std::string& node = n.str;
    if (node == s.hostname || t.connection().command({"EXISTS", kAlivePrefix + node}).integer) {
      live.push_back(node);
      continue;
    }
    // One recoverer per dead node: the lock expires by itself if we die too.
    redis::Reply lock = t.connection().command(
        {"SET", "celeriac.recovering." + node, s.hostname, "NX", "PX", "60000"});
    if (lock.is_nil()) continue;
    int restored = t.recover_worker(node);
    t.connection().command({"SREM", kWorkersKey, node});
    spdlog::warn("event=recovered-dead-worker node={} restored={} by={}", node, restored,
                 s.hostname);
  }
  // Messages of workers without liveness keys (Python's) come back after the visibility
  // timeout, as kombu restores them; what live celeriac workers hold is never touched.
  redis::Args sunion{"SUNION"};
  for (const auto& node : live) sunion.push_back("celeriac.held." + node);
  std::unordered_set<std::string> keep;
  for (const auto& tag : t.connection().command(sunion).elements) keep.insert(tag.str);
  int restored = t.restore_visible(s.options.visibility_timeout_s, keep);
  if (restored > 0) {
    spdlog::warn("event=restored-visible count={} visibility_timeout_s={}", restored,
                 s.options.visibility_timeout_s);
  }
}

// Defined outside the anonymous namespace: control.cc needs the worker for shutdown.
void control_loop(Worker::State& s, Worker& worker) {
  Backoff backoff;
  auto url = redis::Url::parse(s.options.broker_url);
  std::string node_queue = s.hostname + ".celery.pidbox";
  std::string binding_member = std::string(broker::kSep) + std::string(broker::kSep) + node_queue;
  std::string channel = broker::fanout_channel(url.db, "celery.pidbox", "");
  bool online_sent = false;
  auto next_heartbeat = Clock::now();
  auto next_sweep = Clock::now();
  while (!s.stopping) {
    try {
      broker::Transport t(url);
      redis::Connection sub(url, {std::chrono::milliseconds(5000), std::chrono::milliseconds(0)});
      t.connection().command({"SADD", "_kombu.binding.celery.pidbox", binding_member}).ok();
      sub.append({"PSUBSCRIBE", channel});
      if (!sub.read_reply(std::chrono::milliseconds(5000))) throw redis::ConnectionError("no PSUBSCRIBE reply");
      if (!online_sent) {
        publish_worker_event(s, t, "worker-online");
        online_sent = true;
        spdlog::info("event=ready node={} queues={} concurrency={} broker={}", s.hostname,
                     fmt::join(s.options.queues, ","), s.options.concurrency,
                     url.redacted());
      }
      backoff.reset();
      while (!s.stopping) {
        auto now = Clock::now();
        if (now >= next_heartbeat) {
          publish_worker_event(s, t, "worker-heartbeat");
          mark_alive(s, t);
          if (now >= next_sweep) {
            recover_dead_workers(s, t);
            next_sweep = now + std::chrono::seconds(5);
          }
          next_heartbeat = now + std::chrono::milliseconds(
                                     static_cast<long>(s.options.heartbeat_interval_s * 1000));
        }
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_heartbeat - Clock::now());
        auto msg = sub.read_reply(std::min(wait, std::chrono::milliseconds(200)));
        if (!msg || msg->elements.size() != 4 || msg->elements[0].str != "pmessage") continue;
        celery::Envelope env;
        try {
          env = celery::decode_envelope(msg->elements[3].str);
        } catch (const std::exception& e) {
          spdlog::warn("event=bad-control-message error=\"{}\"", e.what());
          continue;
        }
        if (auto c = env.headers.find("clock"); c != env.headers.end() && c->is_number_unsigned()) {
          s.clock.adjust(c->get<uint64_t>());
        }
        const Json& body = env.body;
        if (!body.is_object() || !addressed_to(body, s.hostname)) continue;
        std::string method = body.value("method", "");
        Json arguments = body.value("arguments", Json::object());
        if (!arguments.is_object()) arguments = Json::object();
        spdlog::debug("event=control method={}", method);
        Json reply;
        try {
          reply = handle_control(s, worker, method, arguments);
        } catch (const std::exception& e) {
          spdlog::warn("event=control-error method={} error=\"{}\"", method, e.what());
          reply = {{"error", std::string(e.what())}};
        }
        auto reply_to = body.value("reply_to", Json());
        if (reply.is_null() || !reply_to.is_object() || !body.contains("ticket")) continue;
        Json out = {{s.hostname, reply}};
        Json headers = {{"ticket", body["ticket"]}, {"clock", s.clock.forward()}};
        std::string exchange = reply_to.value("exchange", "reply.celery.pidbox");
        std::string rk = reply_to.value("routing_key", "");
        t.publish_direct(exchange, rk, celery::encode_envelope(out, headers, exchange, rk, 1));
      }
      // Leaving: worker-offline and the pidbox binding removal, as Celery's worker does.
      publish_worker_event(s, t, "worker-offline");
      t.connection().command({"SREM", "_kombu.binding.celery.pidbox", binding_member});
      t.connection().command({"DEL", kAlivePrefix + s.hostname});
      t.connection().command({"SREM", kWorkersKey, s.hostname});
    } catch (const redis::ConnectionError& e) {
      spdlog::error("event=control-unreachable error=\"{}\"", e.what());
      backoff.wait(s.stopping);
    } catch (const std::exception& e) {
      spdlog::error("event=control-error error=\"{}\"", e.what());
      backoff.wait(s.stopping);
    }
  }
}

// ---------------------------------------------------------------------------------------------

void start_executor_locked(Worker::State& s) {
  s.running_executors++;
  s.threads.emplace_back([&s, id = s.next_executor_id++] {
    if (executor_loop(s, id)) return;  // abandoned: already off the books
    std::lock_guard lock(s.mutex);
    s.running_executors--;
    s.writer_cv.notify_all();
  });
}

void grow_pool(Worker::State& s, int n) {
  std::lock_guard lock(s.mutex);
  s.pool_size += n;
  for (int i = 0; i < n; ++i) start_executor_locked(s);
}

Worker::Worker(WorkerOptions options, TaskRegistry registry) : state_(std::make_unique<State>()) {
  auto& s = *state_;
  s.options = std::move(options);
  if (s.options.backend_url.empty()) s.options.backend_url = s.options.broker_url;
  if (s.options.concurrency <= 0) {
    s.options.concurrency = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  if (s.options.queues.empty()) s.options.queues = {"celery"};
  s.registry = std::move(registry);
  s.hostname = resolve_hostname(s.options.hostname);
  s.events_enabled = s.options.task_events;
  s.pool_size = 0;  // grown to `concurrency` by run()
  s.queues = s.options.queues;
  if (s.options.pool == PoolKind::Processes && s.options.pool_child_argv.empty()) {
    throw std::invalid_argument("--pool processes needs the command that starts a pool child");
  }
}

Worker::~Worker() {
  stop();
  for (auto& t : state_->threads) {
    if (t.joinable()) t.join();
  }
  // An abandoned executor thread may still be inside a task and will touch the state when the
  // task returns: the state must outlive it, so it is left allocated.
  if (state_->pool.abandoned_threads > 0) (void)state_.release();
}

const std::string& Worker::hostname() const { return state_->hostname; }

void Worker::stop() {
  auto& s = *state_;
  bool was = s.stopping.exchange(true);
  if (!was) spdlog::info("event=shutdown-requested node={}", s.hostname);
  std::lock_guard lock(s.mutex);
  s.ready_cv.notify_all();
  s.capacity_cv.notify_all();
  s.writer_cv.notify_all();
}

void Worker::abort_now(int exit_code) {
  auto& s = *state_;
  s.stopping = true;
  try {
    broker::TransportOptions topts;
    topts.worker_name = s.hostname;
    topts.connect = {.connect_timeout = std::chrono::milliseconds(1000),
                     .command_timeout = std::chrono::milliseconds(1000)};
    broker::Transport t(redis::Url::parse(s.options.broker_url), topts);
    int restored = t.recover_worker(s.hostname);
    publish_worker_event(s, t, "worker-offline");
    t.connection().pipeline({{"DEL", kAlivePrefix + s.hostname}, {"SREM", kWorkersKey, s.hostname}});
    spdlog::warn("event=cold-shutdown node={} requeued={}", s.hostname, restored);
  } catch (const std::exception& e) {
    spdlog::error("event=cold-shutdown node={} requeue-failed error=\"{}\"", s.hostname, e.what());
  }
  spdlog::shutdown();
  std::_Exit(exit_code);
}

int Worker::run() {
  auto& s = *state_;
  s.started_at = celery::unix_now();
  // Fail fast on a bad URL or an unreachable broker at start, with a clear message.
  redis::Url::parse(s.options.broker_url);
  redis::Url::parse(s.options.backend_url);

  std::thread writer([&s] { Writer(s).run(); });
  std::thread consumer([&s] { consumer_loop(s); });
  std::thread control([&s, this] { control_loop(s, *this); });
  std::thread limits([&s] { time_limit_loop(s); });
  grow_pool(s, s.options.concurrency);

  consumer.join();
  // Warm shutdown: running tasks finish (executors exit after their current task); the writer
  // leaves once no executor is left and every outcome is written. Executors are joined after
  // it, so an abandoned thread (time_limits.h), detached meanwhile, is never waited for.
  writer.join();
  limits.join();
  while (true) {
    std::vector<std::thread> executors;
    {
      std::lock_guard lock(s.mutex);
      executors.swap(s.threads);
    }
    if (executors.empty()) break;
    for (auto& t : executors) t.join();
  }

  // Held but never started (prefetched, scheduled): back to their queues, as kombu restores
  // a closing consumer's unacked messages.
  std::vector<std::string> unstarted;
  {
    std::lock_guard lock(s.mutex);
    for (const auto& r : s.ready) unstarted.push_back(r->message.delivery_tag);
    for (const auto& [eta, r] : s.scheduled) unstarted.push_back(r->message.delivery_tag);
    s.ready.clear();
    s.scheduled.clear();
  }
  try {
    broker::Transport t(redis::Url::parse(s.options.broker_url));
    int restored = 0;
    for (const auto& tag : unstarted) restored += t.requeue(tag) ? 1 : 0;
    if (!unstarted.empty()) spdlog::info("event=requeued count={}", restored);
  } catch (const std::exception& e) {
    spdlog::error("event=requeue-failed count={} error=\"{}\"", unstarted.size(), e.what());
  }
  control.join();
  spdlog::info("event=stopped node={}", s.hostname);
  return 0;
}

}  // namespace celeriac::worker
