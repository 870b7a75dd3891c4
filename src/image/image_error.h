// Typed errors of the image part: every failure to read or preprocess an image is an ImageError
// whose kind tells a caller (and the task layer mapping errors to Celery states) what went wrong.
// All kinds are permanent: retrying the same bytes gives the same error.
#pragma once

#include <stdexcept>
#include <string>

namespace celeriac::image {

enum class ImageErrorKind {
  kEmpty,              // zero bytes
  kUnsupportedFormat,  // not an image, or a format / variant we do not decode
  kCorrupt,            // the header or the data is malformed
  kTruncated,          // the data ends before the image does
  kTooLarge,           // over DecodeLimits (pixel count or file bytes): a decompression bomb guard
  kIo,                 // the file could not be read
  kInvalidArgument,    // bad preprocessing options or an empty image handed to preprocess
};

const char* to_string(ImageErrorKind kind);

class ImageError : public std::runtime_error {
 public:
  ImageError(ImageErrorKind kind, const std::string& message)
      : std::runtime_error(std::string(to_string(kind)) + ": " + message), kind_(kind) {}
  ImageErrorKind kind() const { return kind_; }

 private:
  ImageErrorKind kind_;
};

}  // namespace celeriac::image
