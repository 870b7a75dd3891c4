// Reader of `pytorch_model.bin` as torch.save (PyTorch >= 1.6) writes it: a zip archive, every
// entry stored uncompressed, holding <name>/data.pkl (the pickled state_dict) and one
// <name>/data/<key> entry per storage. The zip central directory is read here (zip64 included), the
// pickle by the restricted unpickler of weights_pickle.h, and every tensor becomes a view into the
// memory-mapped archive: no copy, and tensors that share a storage (tied embeddings) share bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "florence/weights_mapped_file.h"
#include "florence/weights_tensor_set.h"

namespace celeriac::florence {

// One stored member of a zip archive, located inside the mapped file.
struct ZipMember {
  uint64_t data_offset = 0;  // where the member's bytes start in the file
  uint64_t size = 0;
  uint16_t method = 0;  // 0 = stored
};

// The members of a zip archive by name. Throws WeightsError(kFormat) for a damaged archive.
std::map<std::string, ZipMember> read_zip_directory(const MappedFile& file);

// Reads the state_dict of a torch.save archive. Non-tensor entries are skipped; a tensor that is
// not C-contiguous or reaches past its storage throws WeightsError naming it; the legacy (pre-zip)
// torch format, compressed entries and big-endian archives are refused with WeightsError.
TensorSet read_torch_zip(const std::filesystem::path& path, const MapOptions& options = {});

}  // namespace celeriac::florence
