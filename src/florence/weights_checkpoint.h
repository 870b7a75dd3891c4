// A Florence-2 checkpoint opened for the model: its configuration and every tensor under the
// canonical (remote-code) name, whatever file format (model.safetensors, sharded safetensors,
// pytorch_model.bin) and key layout (Microsoft's or transformers' native) the folder holds.
//
//   auto ckpt = Checkpoint::open("tests/data/florence-tiny/remote-bin-fp16");
//   std::span<const float> w = ckpt.f32("image_projection");   // [C3, P], upcast from fp16 once
//
// Tensors stay in the memory-mapped files (zero copy); only tensors that must be made are owned:
// fp32 copies of fp16/bf16 storage (on request, cached), the transposed native image_projection,
// and the defaults of section 9.3 (final_logits_bias zeros, the cosine temporal table). Every
// tensor is checked against the shapes the configuration implies; problems throw one WeightsError
// that names each missing or misshapen tensor.
#pragma once

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "florence/config.h"
#include "florence/weights_mapped_file.h"
#include "florence/weights_tensor.h"
#include "florence/weights_tensor_set.h"

namespace celeriac::florence {

struct CheckpointOptions {
  // Check every tensor against the shapes the configuration implies (and refuse missing ones).
  bool check_shapes = true;
  // Read every page of the weight files at open (MAP_POPULATE) instead of on first use.
  bool populate = false;
  // "" picks as transformers does: model.safetensors, its sharded index, pytorch_model.bin, its
  // sharded index. "safetensors" or "pytorch" insists on one format.
  std::string format;
};

class Checkpoint {
 public:
  // `path` is a checkpoint folder (config.json + weights) or one weights file inside such a folder.
  // Throws WeightsError.
  static Checkpoint open(const std::filesystem::path& path, const CheckpointOptions& options = {});

  const Florence2Config& config() const { return config_; }
  KeyLayout file_layout() const { return file_layout_; }  // layout of the tensor names in the file
  const std::string& format() const { return format_; }   // "safetensors" or "pytorch"
  const std::vector<std::filesystem::path>& files() const { return files_; }

  bool contains(std::string_view name) const;
  // The tensor under its canonical name; throws WeightsError(kMissing) naming it.
  const TensorView& tensor(std::string_view name) const;
  // The tensor as float32: the mapped bytes when stored as aligned fp32, else an exact upcast made
  // on first request and kept. Thread-safe.
  std::span<const float> f32(std::string_view name) const;
  std::vector<std::string> names() const;  // canonical names, sorted

  // Tensors of the file the model does not read (e.g. vision_tower.head.* of old files).
  const std::vector<std::string>& unused() const { return unused_; }
  // What the loader had to resolve, one line each ("lm_head.weight taken from ...").
  const std::vector<std::string>& notes() const { return notes_; }
  // Bytes of the mapped weight files.
  std::size_t mapped_bytes() const;
  // For weights the caller has copied (bf16 decoder copies): drops the whole pages of `data` from
  // this process's resident set when they lie in a mapped file (MADV_DONTNEED on a read-only
  // file mapping: they stay in the page cache and fault back in if read again). A no-op for
  // owned upcasts, whose pages hold the only copy.
  void release_pages(std::span<const float> data) const;
  // Whether `data` lies in a mapped file (not in an owned upcast).
  bool in_mapped_file(std::span<const float> data) const;
  // Copies `data`, which must lie in a mapped file, to `out` by reading the file
  // (MappedFile::read) rather than faulting in the mapping's pages. Throws WeightsError.
  void copy_from_file(std::span<const float> data, float* out) const;

 private:
  Checkpoint() = default;
  const MappedFile* file_of(std::span<const float> data) const;  // null: not in a mapped file
  std::span<const float> make_f32(const std::string& name, const TensorView& view) const;
  const TensorView& own(std::string name, DType dtype, std::vector<int64_t> shape,
                        std::vector<std::byte> bytes);

  Florence2Config config_;
  KeyLayout file_layout_ = KeyLayout::kRemote;
  std::string format_;
  std::vector<std::filesystem::path> files_;
  std::vector<std::shared_ptr<const MappedFile>> mapped_;
  std::map<std::string, TensorView, std::less<>> tensors_;
  std::deque<std::vector<std::byte>> owned_;  // deque: element addresses never move
  std::vector<std::string> unused_;
  std::vector<std::string> notes_;
  mutable std::unique_ptr<std::mutex> f32_mutex_ = std::make_unique<std::mutex>();
  struct Floats {
    struct Free {
      void operator()(float* p) const { std::free(p); }
    };
    std::unique_ptr<float, Free> data;  // not zero-filled: the conversion writes every value
    std::size_t size = 0;
  };
  mutable std::map<std::string, Floats, std::less<>> f32_cache_;
};

// Finds the weights of a checkpoint folder (see CheckpointOptions::format) and reads them without
// any name mapping. Throws WeightsError(kIo) when the folder holds no weights file.
TensorSet read_checkpoint_tensors(const std::filesystem::path& dir, const std::string& format = {},
                                  const MapOptions& options = {});

}  // namespace celeriac::florence
