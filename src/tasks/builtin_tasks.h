// The tasks every celeriac worker registers (tasks.add, tasks.sleep, tasks.tsum) and the
// tests.* tasks that the interop tests and benchmarks use (registered with --test-tasks).
// Their names and semantics match the Python reference's tasks of the same names, so a Python
// and a celeriac worker can serve one queue.
#pragma once

#include "worker/registry.h"

namespace celeriac::tasks {

void register_builtin_tasks(worker::TaskRegistry& registry);
void register_test_tasks(worker::TaskRegistry& registry);

}  // namespace celeriac::tasks
