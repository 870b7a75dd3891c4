// Content-addressed storage of uploaded images, as the reference app keeps them: the bytes go
// to FILES_BASE_PATH (a folder the workers also read, or gs://bucket/prefix) under a name made
// from their SHA-256, so the same image uploaded twice is stored once and its URL is stable.
// The worker is then sent that URL: an absolute path, or the gs:// object.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

#include "storage/fetch.h"

namespace celeriac::app {

struct StoredImage {
  std::string url;     // what tasks.inference_task is given
  std::string sha256;  // lower-case hex of the bytes
  std::string format;  // "jpeg", "png", "webp", "bmp", "gif"
  size_t bytes = 0;
  bool created = false;  // false: these bytes were stored already
};

// The upload is not an image of a format the worker decodes (checked by its magic bytes).
struct NotAnImage : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

class UploadStore {
 public:
  // `base`: a folder (created if missing) or gs://bucket[/prefix]. `gcs` carries the
  // credentials and endpoint for gs:// (storage::FetchOptions::from_env()).
  UploadStore(std::string base, storage::FetchOptions gcs);
  // Throws NotAnImage, storage::FetchError (gs://) or std::runtime_error (local write failed).
  StoredImage put(std::string_view bytes);
  const std::string& base() const { return base_; }

 private:
  std::string base_;
  storage::FetchOptions gcs_;
};

std::string sha256_hex(std::string_view bytes);

}  // namespace celeriac::app
