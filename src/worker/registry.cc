// Task registry (see registry.h).
#include "worker/registry.h"

namespace celeriac::worker {

void TaskRegistry::add(std::string name, TaskFunction function, TaskOptions options) {
  RegisteredTask task{name, std::move(function), options};
  tasks_[std::move(name)] = std::move(task);
}

const RegisteredTask* TaskRegistry::find(const std::string& name) const {
  auto it = tasks_.find(name);
  return it == tasks_.end() ? nullptr : &it->second;
}

RegisteredTask* TaskRegistry::find_mutable(const std::string& name) {
  auto it = tasks_.find(name);
  return it == tasks_.end() ? nullptr : &it->second;
}

std::vector<std::string> TaskRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, task] : tasks_) out.push_back(name);
  return out;
}

}  // namespace celeriac::worker
