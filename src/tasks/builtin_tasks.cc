// Built-in and test tasks (see builtin_tasks.h).
#include "tasks/builtin_tasks.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "celery/codec.h"

namespace celeriac::tasks {
namespace {

using celery::Json;
using worker::TaskContext;
using worker::TaskError;

std::string python_type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "NoneType";
    case Json::value_t::boolean: return "bool";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "int";
    case Json::value_t::number_float: return "float";
    case Json::value_t::string: return "str";
    case Json::value_t::array: return "list";
    default: return "dict";
  }
}

// Python's `x + y` for the JSON types: ints stay ints, mixed numbers become floats,
// strings and lists concatenate; anything else is a TypeError as in Python.
Json python_add(const Json& x, const Json& y) {
  if (x.is_number_integer() && y.is_number_integer() && !x.is_boolean() && !y.is_boolean()) {
    long long a = x.get<long long>(), b = y.get<long long>(), sum;
    if (!__builtin_add_overflow(a, b, &sum)) return sum;
    return static_cast<double>(a) + static_cast<double>(b);
  }
  if (x.is_number() && y.is_number()) return x.get<double>() + y.get<double>();
  if (x.is_string() && y.is_string()) return x.get<std::string>() + y.get<std::string>();
  if (x.is_array() && y.is_array()) {
    Json out = x;
    out.insert(out.end(), y.begin(), y.end());
    return out;
  }
  throw TaskError("TypeError", "unsupported operand type(s) for +: '" + python_type_name(x) +
                                   "' and '" + python_type_name(y) + "'");
}

Json add(TaskContext& ctx) { return python_add(ctx.arg(0, "x"), ctx.arg(1, "y")); }

// The moment `seconds` (a JSON number, checked by the caller) from now.
std::chrono::steady_clock::time_point deadline_in(const Json& seconds) {
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(
             std::chrono::duration<double>(seconds.get<double>()));
}

Json sleep_task(TaskContext& ctx) {
  const Json& seconds = ctx.arg(0, "seconds");
  if (!seconds.is_number() || seconds.get<double>() < 0) {
    throw TaskError("ValueError", "seconds must be a non-negative number");
  }
  const auto until = deadline_in(seconds);
  // Sleep in slices so revoke(terminate=True) and the soft time limit end the task promptly.
  while (std::chrono::steady_clock::now() < until) {
    ctx.check_cancelled();
    auto left = until - std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        left, std::chrono::milliseconds(20)));
  }
  return seconds;
}

Json tsum(TaskContext& ctx) {
  const Json& numbers = ctx.arg(0, "numbers");
  if (!numbers.is_array()) throw TaskError("TypeError", "tsum expects a list of numbers");
  Json total = 0;
  for (const auto& n : numbers) total = python_add(total, n);
  return total;
}

Json echo(TaskContext& ctx) { return {{"args", ctx.args()}, {"kwargs", ctx.kwargs()}}; }

Json fail(TaskContext& ctx) {
  const Json& message = ctx.arg(0, "message");
  std::string type = "ValueError";
  if (const Json* t = ctx.optional_arg(1, "exc_type"); t && t->is_string()) type = t->get<std::string>();
  throw TaskError(type, message.is_string() ? message.get<std::string>() : message.dump());
}

Json flaky(TaskContext& ctx) {
  const Json& fail_times = ctx.arg(0, "fail_times");
  if (!fail_times.is_number_integer()) throw TaskError("TypeError", "fail_times must be an int");
  if (ctx.retries() < fail_times.get<int>()) {
    ctx.retry(1.0, celery::ExceptionInfo{"RuntimeError", "builtins",
                                         Json::array({"try again"})});
  }
  return ctx.retries();
}

// Burns CPU for `seconds` without ever looking at ctx.cancelled(): only a process pool can
// stop it early.
Json spin(TaskContext& ctx) {
  const Json& seconds = ctx.arg(0, "seconds");
  if (!seconds.is_number()) throw TaskError("TypeError", "seconds must be a number");
  const auto until = deadline_in(seconds);
  volatile uint64_t sink = 0;
  while (std::chrono::steady_clock::now() < until) {
    for (int i = 0; i < 10000; ++i) sink = sink + i;
  }
  return seconds;
}

// Waits up to `seconds` for a cancellation and reports which one it saw: how a task catches
// its soft time limit and finishes cleanly (SUCCESS), as a Python task catching
// SoftTimeLimitExceeded does.
Json cancellable(TaskContext& ctx) {
  const Json& seconds = ctx.arg(0, "seconds");
  if (!seconds.is_number()) throw TaskError("TypeError", "seconds must be a number");
  const auto until = deadline_in(seconds);
  while (std::chrono::steady_clock::now() < until) {
    switch (ctx.cancel_reason()) {
      case worker::CancelReason::SoftTimeLimit: return "soft time limit";
      case worker::CancelReason::Revoked: return "revoked";
      case worker::CancelReason::None: break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return "not cancelled";
}

// Maps a file read-only, touches every page and keeps the mapping for the life of the
// process, as a worker keeps its memory-mapped model weights. bench/pool uses it to see whether
// pool children share the pages (they do: the page cache backs every mapping of the file).
Json map_file(TaskContext& ctx) {
  const Json& path = ctx.arg(0, "path");
  if (!path.is_string()) throw TaskError("TypeError", "path must be a string");
  static std::mutex mutex;
  static std::map<std::string, std::pair<const unsigned char*, size_t>> mapped;
  std::unique_lock lock(mutex);
  auto& [data, size] = mapped[path.get<std::string>()];
  if (!data) {
    int fd = ::open(path.get<std::string>().c_str(), O_RDONLY);
    if (fd < 0) throw TaskError("FileNotFoundError", "cannot open " + path.get<std::string>());
    struct stat st {};
    ::fstat(fd, &st);
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw TaskError("OSError", "cannot map " + path.get<std::string>());
    data = static_cast<const unsigned char*>(p);
    size = static_cast<size_t>(st.st_size);
  }
  lock.unlock();  // the entry stays: mappings are never removed
  uint64_t sum = 0;
  for (size_t i = 0; i < size; i += 4096) sum += data[i];
  if (const Json* hold = ctx.optional_arg(1, "hold_s"); hold && hold->is_number()) {
    std::this_thread::sleep_for(std::chrono::duration<double>(hold->get<double>()));
  }
  return sum;
}

// Leaves one file per execution in `dir` (so tests can count executions, duplicates included),
// after working `ms` milliseconds.
Json mark(TaskContext& ctx) {
  const Json& dir = ctx.arg(0, "dir");
  if (!dir.is_string()) throw TaskError("TypeError", "dir must be a string");
  if (const Json* ms = ctx.optional_arg(1, "ms"); ms && ms->is_number()) {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms->get<double>()));
  }
  std::string path = dir.get<std::string>() + "/" + ctx.id() + "." + celery::uuid4();
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd < 0) throw TaskError("OSError", "cannot create " + path);
  std::string who = ctx.hostname() + "\n";
  (void)!::write(fd, who.data(), who.size());
  ::close(fd);
  return ctx.hostname();
}

// Kills the whole process, as a crashing native library would: for poison-message tests.
Json abort_task(TaskContext&) { std::abort(); }

// Celery's Reject: with requeue, the first delivery is refused and the redelivered one runs.
Json reject_task(TaskContext& ctx) {
  const Json* requeue = ctx.optional_arg(0, "requeue");
  bool again = requeue && requeue->is_boolean() && requeue->get<bool>();
  if (again && ctx.message().redelivered) return "redelivered";
  ctx.reject(again, "not wanted");
}

}  // namespace

void register_builtin_tasks(worker::TaskRegistry& registry) {
  registry.add("tasks.add", add);
  registry.add("tasks.sleep", sleep_task);
  registry.add("tasks.tsum", tsum);
}

void register_test_tasks(worker::TaskRegistry& registry) {
  registry.add("tests.echo", echo);
  registry.add("tests.fail", fail);
  registry.add("tests.flaky", flaky, {.max_retries = 3, .default_retry_delay_s = 1});
  registry.add("tests.mark", mark);
  registry.add("tests.abort", abort_task);
  registry.add("tests.map_file", map_file);
  registry.add("tests.spin", spin);
  registry.add("tests.cancellable", cancellable);
  // Default time limits in the task's own options: soft 0.5 s, hard 2 s.
  registry.add("tests.limited", cancellable,
               {.time_limit_s = 2.0, .soft_time_limit_s = 0.5});
  registry.add("tests.reject", reject_task);
  // tests.mark acked at its start (Celery's default): at most once, lost if its worker dies.
  registry.add("tests.mark_once", mark, {.acks_late = false});
}

}  // namespace celeriac::tasks
