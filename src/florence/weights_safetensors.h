// Reader of the safetensors format (huggingface/safetensors): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the raw
// little-endian data. The file is memory-mapped and tensors are views into it (zero copy).
// Sharded checkpoints (model.safetensors.index.json + model-0000k-of-0000n.safetensors) are read
// through their index.
#pragma once

#include <filesystem>
#include <string>

#include "florence/weights_mapped_file.h"
#include "florence/weights_tensor_set.h"

namespace celeriac::florence {

// Reads one .safetensors file. Every header entry is validated (known dtype, offsets inside the
// data section, byte count = numel * dtype size); a bad entry throws WeightsError(kFormat) naming
// it.
TensorSet read_safetensors(const std::filesystem::path& path, const MapOptions& options = {});

// Reads a sharded checkpoint from its index file: every tensor of the weight_map, from its shard.
// A name listed in the index but absent from its shard throws WeightsError(kMissing).
TensorSet read_safetensors_index(const std::filesystem::path& index_path,
                                 const MapOptions& options = {});

// The same for any shard format: pytorch_model.bin.index.json has the same weight_map over .bin
// shards. Each shard is read by `read_shard`; the set's format is `format`.
using ShardReader = TensorSet (*)(const std::filesystem::path&, const MapOptions&);
TensorSet read_sharded_index(const std::filesystem::path& index_path, const std::string& format,
                             ShardReader read_shard, const MapOptions& options = {});

}  // namespace celeriac::florence
