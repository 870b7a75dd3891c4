// Gathers the inference requests that executor threads bring while the model is busy, so that
// one engine run serves them together (the decode steps read every decoder weight once per step
// whatever the batch). Nothing waits for a batch to fill: the thread whose request finds the
// model idle runs whatever is queued at that moment, its own included, up to max_batch; the
// others wait for their results, and the next of them runs the next batch.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "florence/engine.h"

namespace celeriac::tasks {

class RequestBatcher {
 public:
  // run gets 1..max_batch requests and returns one result each, in order.
  using Run = std::function<std::vector<florence::EngineResult>(
      const std::vector<florence::EngineRequest>&)>;
  RequestBatcher(int max_batch, Run run);

  // Blocks until the request has run; rethrows what run threw for its batch.
  florence::EngineResult submit(florence::EngineRequest request);

 private:
  struct Slot {
    florence::EngineRequest request;
    std::optional<florence::EngineResult> result;
    std::exception_ptr error;
    bool done = false;
  };
  void run_batch(std::vector<Slot*>& batch);

  const int max_batch_;
  const Run run_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  std::deque<Slot*> pending_;  // submitted, not yet taken into a batch
  bool running_ = false;       // a batch is in the model
};

}  // namespace celeriac::tasks
