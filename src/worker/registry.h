// The tasks a worker can run, by Celery task name.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "worker/task.h"

namespace celeriac::worker {

struct RegisteredTask {
  std::string name;
  TaskFunction function;
  TaskOptions options;
};

class TaskRegistry {
 public:
  void add(std::string name, TaskFunction function, TaskOptions options = {});
  // nullptr when the name is not registered.
  const RegisteredTask* find(const std::string& name) const;
  std::vector<std::string> names() const;
  // Mutable access for remote control (rate/time limits) before or while running.
  RegisteredTask* find_mutable(const std::string& name);

 private:
  std::map<std::string, RegisteredTask> tasks_;
};

}  // namespace celeriac::worker
