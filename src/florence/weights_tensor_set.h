// The tensors of one checkpoint as its files name them, before any key-layout mapping: what the
// safetensors and PyTorch-zip readers produce. Views point into `files`, which the set keeps
// mapped.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "florence/weights_mapped_file.h"
#include "florence/weights_tensor.h"

namespace celeriac::florence {

struct TensorSet {
  std::string format;  // "safetensors" or "pytorch" (for messages and `inspect-weights`)
  std::vector<std::shared_ptr<const MappedFile>> files;
  std::map<std::string, TensorView, std::less<>> tensors;
  // File each tensor came from (sharded checkpoints), for error messages.
  std::map<std::string, std::filesystem::path, std::less<>> origin;
};

}  // namespace celeriac::florence
