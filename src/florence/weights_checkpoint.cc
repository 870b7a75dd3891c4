// Opening a checkpoint: format detection, layout mapping, tied/default tensors, shape checks.
#include "florence/weights_checkpoint.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "florence/weights_layout.h"
#include "florence/weights_safetensors.h"
#include "florence/weights_torch_zip.h"

namespace celeriac::florence {
namespace {

using Kind = WeightsError::Kind;
namespace fs = std::filesystem;

bool is_floating(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 || d == DType::kF64;
}

// The sinusoid table of the remote code's PositionalEmbeddingCosine1D, in float32.
std::vector<float> temporal_table(int64_t rows, int64_t dim) {
  std::vector<float> table(static_cast<std::size_t>(rows * dim));
  const int64_t half = dim / 2;
  const float step = static_cast<float>(std::log(10000.0) / static_cast<double>(half));
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const float freq = std::exp(static_cast<float>(i) * -step);
      const float angle = static_cast<float>(t) * freq;
      table[t * dim + 2 * i] = std::sin(angle);
      if (2 * i + 1 < dim) table[t * dim + 2 * i + 1] = std::cos(angle);
    }
  }
  return table;
}

// Room for n floats. Large buffers are 2 MiB aligned and asked to be huge pages: converting a
// 463 MB fp16 checkpoint then faults in ~450 pages instead of ~230,000.
float* alloc_floats(std::size_t n) {
  constexpr std::size_t kHuge = 2u << 20;
  const std::size_t bytes = std::max<std::size_t>(n * sizeof(float), 1);
  if (bytes < kHuge) return static_cast<float*>(std::malloc(bytes));
  const std::size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded);
  if (p) ::madvise(p, rounded, MADV_HUGEPAGE);
  return static_cast<float*>(p);
}

std::vector<std::byte> to_bytes(const std::vector<float>& v) {
  std::vector<std::byte> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace

TensorSet read_checkpoint_tensors(const fs::path& dir, const std::string& format,
                                  const MapOptions& options) {
  const bool any = format.empty();
  if (!any && format != "safetensors" && format != "pytorch") {
    throw WeightsError(Kind::kUnsupported, "unknown weights format \"" + format + "\"");
  }
  if (any || format == "safetensors") {
    if (fs::exists(dir / "model.safetensors"))
      return read_safetensors(dir / "model.safetensors", options);
    if (fs::exists(dir / "model.safetensors.index.json")) {
      return read_safetensors_index(dir / "model.safetensors.index.json", options);
    }
  }
  if (any || format == "pytorch") {
    if (fs::exists(dir / "pytorch_model.bin"))
      return read_torch_zip(dir / "pytorch_model.bin", options);
    if (fs::exists(dir / "pytorch_model.bin.index.json")) {
      return read_sharded_index(dir / "pytorch_model.bin.index.json", "pytorch", read_torch_zip,
                                options);
    }
  }
  throw WeightsError(Kind::kIo, dir.string() + " holds no " +
                                    (any ? std::string("model.safetensors or pytorch_model.bin")
                                         : format + " weights"));
}

Checkpoint Checkpoint::open(const fs::path& path, const CheckpointOptions& options) {
  MapOptions map_options;
  map_options.populate = options.populate;
  fs::path dir = path;
  TensorSet raw;
  if (fs::is_directory(path)) {
    raw = read_checkpoint_tensors(path, options.format, map_options);
  } else {
    if (!fs::exists(path)) throw WeightsError(Kind::kIo, path.string() + " does not exist");
    dir = path.parent_path();
    const std::string name = path.filename().string();
    auto ends = [&](std::string_view suffix) {
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends(".safetensors.index.json"))
      raw = read_safetensors_index(path, map_options);
    else if (ends(".bin.index.json"))
      raw = read_sharded_index(path, "pytorch", read_torch_zip, map_options);
    else if (ends(".safetensors"))
      raw = read_safetensors(path, map_options);
    else
      raw = read_torch_zip(path, map_options);
  }

  Checkpoint ck;
  ck.config_ = load_config(dir);
  ck.format_ = raw.format;
  ck.mapped_ = raw.files;
  for (const auto& f : raw.files) ck.files_.push_back(f->path());

  std::vector<std::string> raw_names;
  for (const auto& [name, view] : raw.tensors) raw_names.push_back(name);
  const auto layout = detect_layout(raw_names);
  if (!layout) {
    throw WeightsError(Kind::kFormat, dir.string() + ": no Florence-2 tensor names in the weights");
  }
  ck.file_layout_ = *layout;

  for (auto& [name, view] : raw.tensors) {
    std::string canonical = name;
    if (*layout == KeyLayout::kNative) {
      auto mapped = native_to_canonical(name);
      if (!mapped) {
        ck.unused_.push_back(name);
        continue;
      }
      canonical = *mapped;
      if (canonical == kImageProjection && view.shape.size() == 2) {
        // nn.Linear [P, C] -> the remote code's bare [C, P] parameter (a small copy).
        const int64_t rows = view.shape[0], cols = view.shape[1];
        const std::size_t es = dtype_size(view.dtype);
        std::vector<std::byte> t(view.nbytes);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < cols; ++c) {
            std::memcpy(&t[(c * rows + r) * es], view.data + (r * cols + c) * es, es);
          }
        }
        ck.own(canonical, view.dtype, {cols, rows}, std::move(t));
        ck.notes_.push_back("image_projection transposed from the native [P, C] layout");
        continue;
      }
    } else if (is_ignored_remote_tensor(name) ||
               (name.rfind("vision_tower.", 0) != 0 && name.rfind("language_model.", 0) != 0 &&
                name.rfind("image_", 0) != 0 && name.rfind("visual_temporal_embed.", 0) != 0)) {
      ck.unused_.push_back(name);
      continue;
    }
    ck.tensors_.insert_or_assign(canonical, view);
  }

  // Tied embeddings (9.3): the first present name stands for all four.
  const auto& tied = tied_embedding_names();
  for (const auto& source : tied) {
    auto it = ck.tensors_.find(source);
    if (it == ck.tensors_.end()) continue;
    const TensorView shared = it->second;
    for (const auto& name : tied) {
      if (!ck.tensors_.count(name)) {
        ck.tensors_.emplace(name, shared);
        ck.notes_.push_back(name + " tied to " + source);
      }
    }
    break;
  }
  const auto& text = ck.config_.text;
  if (!ck.tensors_.count(kFinalLogitsBias)) {
    // Absent from native files; zeros in Microsoft's (the remote code ignores it when missing).
    int64_t rows = text.vocab_size;
    if (auto it = ck.tensors_.find(tied.front());
        it != ck.tensors_.end() && !it->second.shape.empty()) {
      rows = it->second.shape[0];
    }
    ck.own(std::string(kFinalLogitsBias), DType::kF32, {1, rows},
           std::vector<std::byte>(static_cast<std::size_t>(rows) * 4));
    ck.notes_.push_back(std::string(kFinalLogitsBias) + " absent: zeros");
  }
  if (!ck.tensors_.count(kTemporalEmbedding)) {
    const auto& v = ck.config_.vision;
    ck.own(std::string(kTemporalEmbedding), DType::kF32,
           {v.max_temporal_embeddings, v.dim_embed.back()},
           to_bytes(temporal_table(v.max_temporal_embeddings, v.dim_embed.back())));
    ck.notes_.push_back(std::string(kTemporalEmbedding) + " absent: recomputed");
  }

  if (options.check_shapes) {
    std::vector<std::pair<std::string, std::string>> problems;  // (tensor, message)
    Kind first_kind = Kind::kMissing;
    for (const auto& e : expected_tensors(ck.config_)) {
      auto it = ck.tensors_.find(e.name);
      if (it == ck.tensors_.end()) {
        if (problems.empty()) first_kind = Kind::kMissing;
        problems.emplace_back(e.name, "missing tensor " + e.name + " (expected shape " +
                                          shape_to_string(e.shape) + ")");
      } else if (it->second.shape != e.shape) {
        if (problems.empty()) first_kind = Kind::kShape;
        problems.emplace_back(e.name, "tensor " + e.name + " has shape " +
                                          it->second.shape_string() + ", the config implies " +
                                          shape_to_string(e.shape));
      } else if (!is_floating(it->second.dtype)) {
        if (problems.empty()) first_kind = Kind::kDtype;
        problems.emplace_back(e.name, "tensor " + e.name + " is " +
                                          std::string(dtype_name(it->second.dtype)) +
                                          ", not a floating type");
      }
    }
    if (!problems.empty()) {
      std::string msg =
          dir.string() + " (" + key_layout_name(ck.file_layout_) + " layout, " + ck.format_ + "): ";
      const std::size_t shown = std::min<std::size_t>(problems.size(), 8);
      for (std::size_t i = 0; i < shown; ++i) msg += (i ? "; " : "") + problems[i].second;
      if (problems.size() > shown) {
        msg += "; and " + std::to_string(problems.size() - shown) + " more";
      }
      throw WeightsError(first_kind, msg, problems.front().first);
    }
  }
  return ck;
}

const TensorView& Checkpoint::own(std::string name, DType dtype, std::vector<int64_t> shape,
                                  std::vector<std::byte> bytes) {
  owned_.push_back(std::move(bytes));
  TensorView view;
  view.dtype = dtype;
  view.shape = std::move(shape);
  view.data = owned_.back().data();
  view.nbytes = owned_.back().size();
  return tensors_.insert_or_assign(std::move(name), std::move(view)).first->second;
}

bool Checkpoint::contains(std::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

const TensorView& Checkpoint::tensor(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    throw WeightsError(Kind::kMissing, "checkpoint has no tensor " + std::string(name),
                       std::string(name));
  }
  return it->second;
}

std::span<const float> Checkpoint::f32(std::string_view name) const {
  const TensorView& view = tensor(name);
  if (view.dtype == DType::kF32 &&
      reinterpret_cast<std::uintptr_t>(view.data) % alignof(float) == 0) {
    return {reinterpret_cast<const float*>(view.data), static_cast<std::size_t>(view.numel())};
  }
  return make_f32(std::string(name), view);
}

std::span<const float> Checkpoint::make_f32(const std::string& name, const TensorView& view) const {
  std::lock_guard lock(*f32_mutex_);
  auto it = f32_cache_.find(name);
  if (it == f32_cache_.end()) {
    // Tied names share one conversion.
    for (auto& [other, floats] : f32_cache_) {
      if (tensors_.find(other)->second.data == view.data) return {floats.data.get(), floats.size};
    }
    Floats floats;
    floats.size = static_cast<std::size_t>(view.numel());
    floats.data.reset(alloc_floats(floats.size));
    convert_to_f32(view, {floats.data.get(), floats.size});
    it = f32_cache_.emplace(name, std::move(floats)).first;
  }
  return {it->second.data.get(), it->second.size};
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, view] : tensors_) out.push_back(name);
  return out;
}

void Checkpoint::release_pages(std::span<const float> data) const {
  if (!file_of(data)) return;  // an owned upcast holds the only copy
  // Whole pages inside the tensor only: the pages at its ends may hold neighbours in use.
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(data.data());
  const std::uintptr_t lo = (begin + page - 1) / page * page;
  const std::uintptr_t hi = (begin + data.size_bytes()) / page * page;
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

const MappedFile* Checkpoint::file_of(std::span<const float> data) const {
  const auto* begin = reinterpret_cast<const std::byte*>(data.data());
  for (const auto& file : mapped_)
    if (begin >= file->data() && begin + data.size_bytes() <= file->data() + file->size())
      return file.get();
  return nullptr;
}

bool Checkpoint::in_mapped_file(std::span<const float> data) const {
  return file_of(data) != nullptr;
}

void Checkpoint::copy_from_file(std::span<const float> data, float* out) const {
  const MappedFile* file = file_of(data);
  if (!file) throw WeightsError(WeightsError::Kind::kIo, "copy_from_file: not in a mapped file");
  file->read(static_cast<std::size_t>(reinterpret_cast<const std::byte*>(data.data()) - file->data()),
             {reinterpret_cast<std::byte*>(out), data.size_bytes()});
}

std::size_t Checkpoint::mapped_bytes() const {
  std::size_t n = 0;
  for (const auto& f : mapped_) n += f->size();
  return n;
}

}  // namespace celeriac::florence
