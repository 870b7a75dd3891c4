// mmap(2) of a whole checkpoint file, read-only and shared.
#include "florence/weights_mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "florence/weights_tensor.h"

namespace celeriac::florence {

std::shared_ptr<const MappedFile> MappedFile::open(const std::filesystem::path& path,
                                                   const MapOptions& options) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw WeightsError(WeightsError::Kind::kIo,
                       "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw WeightsError(WeightsError::Kind::kIo,
                       "cannot stat " + path.string() + ": " + std::strerror(err));
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<std::size_t>(st.st_size);
  if (file->size_ > 0) {
    int flags = MAP_SHARED | (options.populate ? MAP_POPULATE : 0);
    void* p = ::mmap(nullptr, file->size_, PROT_READ, flags, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw WeightsError(WeightsError::Kind::kIo,
                         "cannot map " + path.string() + ": " + std::strerror(err));
    }
    file->data_ = static_cast<const std::byte*>(p);
  }
  file->fd_ = fd;
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

void MappedFile::read(std::size_t offset, std::span<std::byte> out) const {
  if (offset > size_ || out.size() > size_ - offset)
    throw WeightsError(WeightsError::Kind::kIo, "read past the end of " + path_.string());
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done,
                              static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw WeightsError(WeightsError::Kind::kIo,
                         "cannot read " + path_.string() + ": " +
                             (n < 0 ? std::strerror(errno) : "file shrank"));
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace celeriac::florence
