// A read-only memory mapping of a whole file: the weight loaders point tensors into it, so a
// checkpoint is never copied into the heap (pages come from the page cache, shared between
// processes that map the same file).
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>

namespace celeriac::florence {

struct MapOptions {
  // Fault every page in at open (MAP_POPULATE) instead of on first touch: slower open, no page
  // faults later. Off by default: a warm page cache makes lazy mapping nearly free.
  bool populate = false;
};

class MappedFile {
 public:
  // Maps `path`; throws WeightsError(kIo) when it cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path,
                                                const MapOptions& options = {});
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }
  // Copies bytes [offset, offset + out.size()) of the file with pread(2): the same bytes as the
  // mapping, without faulting its pages in one by one (~4x faster for a few hundred MB).
  // Throws WeightsError(kIo).
  void read(std::size_t offset, std::span<std::byte> out) const;

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  int fd_ = -1;  // kept open: read() must see the file that is mapped, even if the path changes
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace celeriac::florence
