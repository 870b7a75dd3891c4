// Shared by the text-side tests: the golden files' folder and a JSON-lines reader.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace celeriac::florence::testing {

inline const std::filesystem::path kTextData =
    std::filesystem::path(CELERIAC_TEST_DATA) / "florence-text";

inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

}  // namespace celeriac::florence::testing
