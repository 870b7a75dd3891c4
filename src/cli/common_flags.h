// Helpers every subcommand shares: Celery's environment variables and the log format.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <string>

namespace celeriac::cli {

// Celery's environment variables, most specific first.
inline std::string env_or(const char* a, const char* b, const std::string& fallback) {
  if (const char* v = std::getenv(a); v && *v) return v;
  if (b) {
    if (const char* v = std::getenv(b); v && *v) return v;
  }
  return fallback;
}

// One line per event, key=value fields (see docs/cli-contract.md).
inline void set_log_level(const std::string& level) {
  auto l = spdlog::level::from_str(level == "warning" ? "warn" : level);
  spdlog::set_level(l == spdlog::level::off && level != "off" ? spdlog::level::info : l);
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
}

}  // namespace celeriac::cli
