// Celery's Redis result backend (celery-on-redis.md §6): results live in
// celery-task-meta-<id> with an expiry and every write is also PUBLISHed on a channel of the
// same name, so waiting clients wake at once. Chords count their finished members in
// celery-taskset-meta-<gid>.j/.t/.s exactly as Celery's worker does, so Python and celeriac
// workers can finish members of the same chord.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "celery/json.h"
#include "celery/result.h"
#include "redis/connection.h"

namespace celeriac::backend {

struct BackendOptions {
  // TTL of result keys in seconds; 0 = keep forever. Celery's default result_expires is 1 day.
  long result_expires_s = 86400;
};

class ResultBackend {
 public:
  explicit ResultBackend(redis::Url url, BackendOptions options = {});

  // Stores metas (one round trip for all). A stored SUCCESS is never overwritten, as Celery
  // protects against duplicate executions.
  void store(const std::vector<celery::ResultMeta>& metas);
  void store(const celery::ResultMeta& meta) { store(std::vector<celery::ResultMeta>{meta}); }
  // The one command that stores `metas`, for callers that pipeline it with other commands on
  // a connection of their own (EVAL, not EVALSHA, so a restarted Redis needs no reload).
  static redis::Args store_command(const std::vector<celery::ResultMeta>& metas, long expires_s);

  // nullopt when no meta is stored (Celery reads that as PENDING).
  std::optional<celery::ResultMeta> get(const std::string& task_id);

  // Records one finished chord member; when it was the last one, returns the members'
  // results in group_index order (the chord body's argument) and clears the bookkeeping.
  // `state_result` is [1, task_id, state, result] as Celery stores it.
  struct ChordPart {
    std::string group_id;
    int group_index = 0;
    std::string task_id;
    std::string state;
    celery::Json result;
  };
  struct ChordOutcome {
    bool complete = false;
    bool failed = false;            // a member failed or was revoked
    celery::Json results;           // values in order (when complete and not failed)
    std::string failed_task_id;     // first failed member
    celery::Json failed_exception;  // its exception (when failed)
  };
  ChordOutcome chord_part_done(const ChordPart& part);
  // The chord size set by the client (celery-taskset-meta-<gid>.s), used when it is missing.
  void set_chord_size(const std::string& group_id, int size);

  redis::Connection& connection() { return conn_; }
  long result_expires_s() const { return options_.result_expires_s; }

 private:
  redis::Connection conn_;
  BackendOptions options_;
};

// Waits for one task's result as Celery's client does: SUBSCRIBE to its channel, GET once
// (covers a result written before the subscription), then read published metas until a
// ready state arrives. Keeps its own subscriber connection.
class ResultWaiter {
 public:
  explicit ResultWaiter(redis::Url url);
  // nullopt on timeout; otherwise the ready meta.
  std::optional<celery::ResultMeta> wait(const std::string& task_id,
                                         std::chrono::milliseconds timeout);

 private:
  redis::Url url_;
  redis::Connection getter_;
  redis::Connection subscriber_;
};

}  // namespace celeriac::backend
