// Shared helpers of the image tests: the fixture folder, file reading, SHA-256 of buffers (the
// goldens store digests of PIL's bytes rather than the bytes), and the parsed goldens.json.
#pragma once

#include <openssl/sha.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace celeriac::image::testing {

inline std::filesystem::path data_dir() {
  return std::filesystem::path(CELERIAC_TEST_DATA) / "image";
}

inline std::vector<uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string sha256_hex(const void* data, size_t size) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(static_cast<const unsigned char*>(data), size, digest);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : digest) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

inline const nlohmann::json& goldens() {
  static const nlohmann::json doc = [] {
    std::ifstream in(data_dir() / "goldens.json");
    return nlohmann::json::parse(in);
  }();
  return doc;
}

// Path of the fixture image whose name ends with `suffix` (names carry a changing index prefix).
inline std::filesystem::path fixture(const std::string& suffix) {
  for (const auto& g : goldens()["images"]) {
    const std::string file = g["file"];
    if (file.size() >= suffix.size() &&
        file.compare(file.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return data_dir() / file;
    }
  }
  throw std::runtime_error("no fixture named *" + suffix);
}

}  // namespace celeriac::image::testing
