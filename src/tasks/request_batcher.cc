// RequestBatcher (see request_batcher.h).
#include "tasks/request_batcher.h"

#include <algorithm>
#include <stdexcept>

namespace celeriac::tasks {

RequestBatcher::RequestBatcher(int max_batch, Run run)
    : max_batch_(std::max(1, max_batch)), run_(std::move(run)) {}

florence::EngineResult RequestBatcher::submit(florence::EngineRequest request) {
  Slot slot{std::move(request)};
  std::unique_lock lock(mutex_);
  pending_.push_back(&slot);
  while (!slot.done) {
    if (running_) {
      done_cv_.wait(lock);
      continue;
    }
    // The model is idle: run what is queued, oldest first (our own slot is among them unless
    // more than max_batch came before it; then the loop runs again).
    running_ = true;
    std::vector<Slot*> batch;
    while (!pending_.empty() && static_cast<int>(batch.size()) < max_batch_) {
      batch.push_back(pending_.front());
      pending_.pop_front();
    }
    lock.unlock();
    run_batch(batch);
    lock.lock();
    for (Slot* s : batch) s->done = true;
    running_ = false;
    done_cv_.notify_all();
  }
  if (slot.error) std::rethrow_exception(slot.error);
  return std::move(*slot.result);
}

void RequestBatcher::run_batch(std::vector<Slot*>& batch) {
  // The waiting threads own the slots and block until done: moving their requests out is safe.
  std::vector<florence::EngineRequest> requests;
  for (Slot* s : batch) requests.push_back(std::move(s->request));
  try {
    std::vector<florence::EngineResult> results = run_(requests);
    if (results.size() != batch.size())
      throw std::logic_error("inference: " + std::to_string(results.size()) + " results for " +
                             std::to_string(batch.size()) + " requests");
    for (size_t i = 0; i < batch.size(); ++i) batch[i]->result = std::move(results[i]);
  } catch (...) {
    for (Slot* s : batch) s->error = std::current_exception();
  }
}

}  // namespace celeriac::tasks
