// safetensors header parsing and validation over a mapped file.
#include "florence/weights_safetensors.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace celeriac::florence {
namespace {

using Kind = WeightsError::Kind;

void merge_into(TensorSet& dst, TensorSet&& src) {
  for (auto& f : src.files) dst.files.push_back(std::move(f));
  for (auto& [name, view] : src.tensors) {
    dst.origin[name] = src.origin[name];
    dst.tensors.insert_or_assign(name, std::move(view));
  }
}

}  // namespace

TensorSet read_safetensors(const std::filesystem::path& path, const MapOptions& options) {
  auto file = MappedFile::open(path, options);
  const std::string where = path.string();
  if (file->size() < 8) {
    throw WeightsError(Kind::kFormat, where + ": too short for a safetensors file");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<uint8_t>(file->data()[i]);
  }
  if (header_len > file->size() - 8) {
    throw WeightsError(Kind::kFormat, where + ": header length " + std::to_string(header_len) +
                                          " exceeds the file size (truncated file?)");
  }
  const char* header_begin = reinterpret_cast<const char*>(file->data() + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw WeightsError(Kind::kFormat, where + ": safetensors header is not JSON: " + e.what());
  }
  if (!header.is_object()) {
    throw WeightsError(Kind::kFormat, where + ": safetensors header is not a JSON object");
  }
  const std::byte* data = file->data() + 8 + header_len;
  const uint64_t data_size = file->size() - 8 - header_len;

  TensorSet set;
  set.format = "safetensors";
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    auto bad = [&](const std::string& why) {
      return WeightsError(Kind::kFormat, where + ": tensor " + name + ": " + why, name);
    };
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      throw bad("entry needs dtype, shape and data_offsets");
    }
    TensorView view;
    try {
      view.dtype = dtype_from_safetensors_name(entry["dtype"].get<std::string>());
      for (const auto& d : entry["shape"]) {
        int64_t v = d.get<int64_t>();
        if (v < 0) throw bad("negative dimension");
        view.shape.push_back(v);
      }
      const auto& offs = entry["data_offsets"];
      if (!offs.is_array() || offs.size() != 2) throw bad("data_offsets must be [begin, end]");
      uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
      if (begin > end || end > data_size) {
        throw bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  ") outside the data section of " + std::to_string(data_size) +
                  " bytes (truncated file?)");
      }
      view.nbytes = end - begin;
      if (static_cast<uint64_t>(view.numel()) * dtype_size(view.dtype) != view.nbytes) {
        throw bad("shape " + view.shape_string() + " of " + std::string(dtype_name(view.dtype)) +
                  " needs " + std::to_string(view.numel() * dtype_size(view.dtype)) +
                  " bytes, data_offsets give " + std::to_string(view.nbytes));
      }
      view.data = data + begin;
    } catch (const nlohmann::json::exception& e) {
      throw bad(std::string("malformed entry: ") + e.what());
    } catch (const WeightsError& e) {
      if (e.tensor().empty()) throw bad(e.what());
      throw;
    }
    set.origin[name] = path;
    set.tensors.emplace(name, std::move(view));
  }
  set.files.push_back(std::move(file));
  return set;
}

TensorSet read_safetensors_index(const std::filesystem::path& index_path,
                                 const MapOptions& options) {
  return read_sharded_index(index_path, "safetensors", read_safetensors, options);
}

TensorSet read_sharded_index(const std::filesystem::path& index_path, const std::string& format,
                             ShardReader read_shard, const MapOptions& options) {
  std::ifstream in(index_path);
  if (!in) {
    throw WeightsError(Kind::kIo, "cannot open " + index_path.string());
  }
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw WeightsError(Kind::kFormat, index_path.string() + ": not JSON: " + e.what());
  }
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw WeightsError(Kind::kFormat, index_path.string() + ": no weight_map object");
  }
  const auto dir = index_path.parent_path();
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) {
      throw WeightsError(Kind::kFormat,
                         index_path.string() + ": weight_map[" + name + "] is not a file name",
                         name);
    }
    const auto shard_name = shard.get<std::string>();
    if (shard_name.find('/') != std::string::npos || shard_name.find("..") != std::string::npos) {
      throw WeightsError(
          Kind::kFormat,
          index_path.string() + ": shard name " + shard_name + " leaves the checkpoint folder",
          name);
    }
    by_shard[shard_name].push_back(name);
  }
  TensorSet set;
  set.format = format;
  for (const auto& [shard_name, names] : by_shard) {
    TensorSet shard = read_shard(dir / shard_name, options);
    for (const auto& name : names) {
      if (!shard.tensors.count(name)) {
        throw WeightsError(Kind::kMissing,
                           index_path.string() + " lists " + name + " in " + shard_name +
                               ", which does not hold it",
                           name);
      }
    }
    merge_into(set, std::move(shard));
  }
  return set;
}

}  // namespace celeriac::florence
