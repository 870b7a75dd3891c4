// Helpers shared by the florence weights tests: fixture paths, temporary folders, and a small
// safetensors writer to make damaged or edited copies of the committed checkpoints.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "florence/weights_tensor.h"

namespace celeriac::florence::testing {

std::filesystem::path tiny_dir();  // tests/data/florence-tiny
std::filesystem::path tiny(const std::string& folder);

// A fresh empty folder under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::filesystem::path& path);
void write_file(const std::filesystem::path& path, const std::string& bytes);

// Writes tensors (copied from their views) as one safetensors file.
void write_safetensors(const std::filesystem::path& path,
                       const std::map<std::string, TensorView>& tensors);

}  // namespace celeriac::florence::testing
