// kombu's Redis transport, as a Python Celery worker or client sees it (celery-on-redis.md §4-5):
// queues are lists (LPUSH in, RPOP out), priority steps live in "<queue>\x06\x16<step>" lists,
// routing goes through the _kombu.binding.<exchange> sets, fan-out goes over pub/sub, and every
// message a consumer holds is recorded in the `unacked` hash + `unacked_index` zset until acked.
//
// Reservation is one Lua script: pop and record happen atomically, so there is no instant at
// which a message exists only in a worker's memory (kombu's BRPOP-then-HSET has one).
// A Transport wraps one connection and is used by one thread.
#pragma once

#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "redis/connection.h"

namespace celeriac::broker {

inline constexpr std::string_view kSep = "\x06\x16";
inline constexpr int kPrioritySteps[] = {0, 3, 6, 9};

// The list holding messages of `priority` (0-9; on Redis 0 is served first) for `queue`.
std::string priority_key(std::string_view queue, int priority);
// The queue a list key belongs to ("celery\x06\x163" -> "celery").
std::string queue_of_key(std::string_view key);
// Every list of `queues` in the order kombu's BRPOP serves them: by priority step, then queue.
std::vector<std::string> consume_order(const std::vector<std::string>& queues);
// Pub/sub channel of a fan-out exchange ("/0.celeryev/task.multi", "/0.celery.pidbox").
std::string fanout_channel(int db, std::string_view exchange, std::string_view routing_key);

struct TransportOptions {
  std::string unacked_key = "unacked";
  std::string unacked_index_key = "unacked_index";
  std::string dead_letter_key = "celeriac.deadletter";
  std::string worker_name;  // recorded in dead-letter entries
  redis::ConnectOptions connect;
};

// A message taken from a queue and recorded as unacked.
struct Delivery {
  std::string queue;     // queue name (priority suffix removed)
  std::string envelope;  // the exact text that was in the list
};

// A message the reserve script moved straight to the dead-letter list (not JSON, no tag).
struct DeadLetter {
  std::string queue;
  std::string reason;
};

struct ReserveResult {
  std::vector<Delivery> deliveries;
  std::vector<DeadLetter> dead_letters;
};

class Transport {
 public:
  Transport(redis::Url url, TransportOptions options = {});

  redis::Connection& connection() { return conn_; }
  int db() const { return conn_.url().db; }

  // Makes `queue` routable through the direct exchange of the same name, as Celery's
  // Queue(name, Exchange(name), routing_key=name) does: SADD _kombu.binding.<q> "<q>SEPSEP<q>".
  void declare_queue(std::string_view queue);
  // LPUSH to the queue's list for `priority`.
  void publish(std::string_view queue, int priority, std::string_view envelope);
  // Routes through a direct exchange's binding table; returns how many queues got it
  // (0 = dropped, as kombu drops unroutable messages).
  int publish_direct(std::string_view exchange, std::string_view routing_key,
                     std::string_view envelope);
  // PUBLISH on the exchange's fan-out channel.
  void publish_fanout(std::string_view exchange, std::string_view routing_key,
                      std::string_view envelope);

  // Takes up to `max_count` messages from `keys` (list keys in service order), recording each
  // in unacked/unacked_index in the same atomic step. Never blocks. Messages left in this
  // worker's staging list by wait() are taken first.
  ReserveResult reserve(const std::vector<std::string>& keys, int max_count);
  // Blocks up to `timeout_s` until a message arrives on `key` and moves it, atomically, to
  // this worker's staging list (BLMOVE), where the next reserve() records it: an idle worker
  // wakes at once without a window in which the message exists only in its memory.
  // Returns false on timeout, or at once when the server lacks BLMOVE (then callers poll).
  bool wait(const std::string& key, double timeout_s);
  // celeriac.staging.<worker name>; a restarted worker with the same name adopts what is left.
  std::string staging_key() const;
  // Puts what wait() left in the staging list back on its queues, for a worker that stops
  // without reserving again (a wait that returned a message just as the stop was asked for).
  // Returns how many messages went back.
  int return_staged();
  bool blocking_wait() const { return blocking_wait_; }
  // Acknowledges: removes the tags from unacked/unacked_index (one round trip for all).
  void ack(const std::vector<std::string>& delivery_tags);
  // The same as commands, for callers that pipeline the ack with other work.
  std::vector<redis::Args> ack_commands(const std::vector<std::string>& delivery_tags) const;
  // Moves a delivered message to the dead-letter list with a reason and acks it, atomically.
  void dead_letter(std::string_view queue, std::string_view envelope, std::string_view tag,
                   std::string_view reason);
  // The LPUSH that files a message in the dead-letter list, for callers that pipeline it with
  // its result and ack. Entries are JSON {reason, queue, message, time, worker}.
  redis::Args dead_letter_command(std::string_view queue, std::string_view envelope,
                                  std::string_view reason) const;
  // Puts an unacked message back on its queue (marked redelivered) and removes it from
  // unacked, as kombu's restore does. `to_head` = consumed last (reject with requeue).
  // `died_running`: the message was running when its worker died, so its delivery count
  // (properties.celeriac_deliveries) goes up by one; poison messages are found by that count.
  // Returns false when the tag is not held (already acked or restored by someone else).
  bool requeue(std::string_view delivery_tag, bool to_head = false,
               const std::string& owner_held_key = "", bool died_running = false);
  // Restores everything a dead worker held: its recorded tags (celeriac.held.<node>) go back to
  // their queues as kombu restores them (those it had started, per celeriac.running.<node>,
  // with their delivery count raised), and its staging list is emptied into its queues.
  // Returns how many messages went back. Callers make sure `node` is dead (no liveness key),
  // or that `node` is this process's own name at start, before anything is reserved.
  int recover_worker(const std::string& node);
  // After a failed round trip of this worker's consumer: what the held set records beyond
  // `known` (every tag the worker holds in memory) was reserved without the worker learning of
  // it, e.g. a reserve script that ran but whose reply was lost. Those go back to their queues
  // (not counted as deliveries: they never started); tags with no unacked entry left are
  // dropped from the set. Returns how many messages went back.
  int requeue_unknown_held(const std::unordered_set<std::string>& known);
  // kombu's visibility-timeout restore (QoS.restore_visible), for workers that leave no
  // liveness key (Python workers): under kombu's `unacked_mutex`, every message unacked for
  // longer than `visibility_timeout_s` goes back to its queue, except the tags in `keep` (held
  // by live celeriac workers, which may legitimately run that long). At most `limit` per call.
  // Returns how many went back; 0 when another restorer holds the mutex.
  int restore_visible(double visibility_timeout_s, const std::unordered_set<std::string>& keep,
                      int limit = 1000);
  // celeriac.held.<worker name>: tags this worker holds ("" without a worker name).
  std::string held_key() const;
  // celeriac.running.<worker name>: a hash, one field per executor, holding the tags it is
  // running (space-separated). Written before a task starts, so that after a crash the
  // restorer knows which held messages were running and which were only prefetched.
  static std::string running_key(std::string_view node);

 private:
  redis::Connection conn_;
  TransportOptions options_;
  bool blocking_wait_ = true;
};

}  // namespace celeriac::broker
