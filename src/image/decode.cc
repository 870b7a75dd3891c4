// Format sniffing, input limits and file reading; the per-format work is in decode_<format>.cc.
#include "image/decode.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include "image/format_decoders.h"
#include "image/image_error.h"

namespace celeriac::image {

const char* to_string(ImageErrorKind kind) {
  switch (kind) {
    case ImageErrorKind::kEmpty:
      return "empty image";
    case ImageErrorKind::kUnsupportedFormat:
      return "unsupported image format";
    case ImageErrorKind::kCorrupt:
      return "corrupt image";
    case ImageErrorKind::kTruncated:
      return "truncated image";
    case ImageErrorKind::kTooLarge:
      return "image too large";
    case ImageErrorKind::kIo:
      return "image read error";
    case ImageErrorKind::kInvalidArgument:
      return "invalid argument";
  }
  return "image error";
}

const char* to_string(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kWebp:
      return "WEBP";
    case ImageFormat::kBmp:
      return "BMP";
    case ImageFormat::kGif:
      return "GIF";
    case ImageFormat::kUnknown:
      break;
  }
  return "unknown";
}

ImageFormat sniff_format(std::span<const uint8_t> b) {
  auto starts = [&](const char* magic, size_t at = 0) {
    size_t n = std::strlen(magic);
    return b.size() >= at + n && std::memcmp(b.data() + at, magic, n) == 0;
  };
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return ImageFormat::kJpeg;
  if (starts("\x89PNG\r\n\x1a\n")) return ImageFormat::kPng;
  if (starts("RIFF") && starts("WEBP", 8)) return ImageFormat::kWebp;
  if (starts("BM")) return ImageFormat::kBmp;
  if (starts("GIF87a") || starts("GIF89a")) return ImageFormat::kGif;
  return ImageFormat::kUnknown;
}

namespace detail {

void check_dimensions(uint64_t width, uint64_t height, const DecodeLimits& limits) {
  if (width == 0 || height == 0) {
    throw ImageError(ImageErrorKind::kCorrupt, "image has a zero dimension (" +
                                                   std::to_string(width) + "x" +
                                                   std::to_string(height) + ")");
  }
  if (width > limits.max_dimension || height > limits.max_dimension ||
      width * height > limits.max_pixels) {
    throw ImageError(ImageErrorKind::kTooLarge,
                     std::to_string(width) + "x" + std::to_string(height) + " = " +
                         std::to_string(width * height) + " pixels exceeds the limit of " +
                         std::to_string(limits.max_pixels) + " pixels (side at most " +
                         std::to_string(limits.max_dimension) + ")");
  }
}

void allocate_rgb(DecodedImage& image, int width, int height, const DecodeLimits& limits) {
  check_dimensions(static_cast<uint64_t>(width), static_cast<uint64_t>(height), limits);
  image.width = width;
  image.height = height;
  image.rgb.assign(static_cast<size_t>(width) * static_cast<size_t>(height) * 3, 0);
}

}  // namespace detail

DecodedImage decode_image(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  if (bytes.empty()) throw ImageError(ImageErrorKind::kEmpty, "zero-byte input");
  if (bytes.size() > limits.max_file_bytes) {
    throw ImageError(ImageErrorKind::kTooLarge,
                     std::to_string(bytes.size()) + " bytes exceeds the limit of " +
                         std::to_string(limits.max_file_bytes) + " bytes");
  }
  ImageFormat format = sniff_format(bytes);
  DecodedImage image;
  switch (format) {
    case ImageFormat::kJpeg:
      image = detail::decode_jpeg(bytes, limits);
      break;
    case ImageFormat::kPng:
      image = detail::decode_png(bytes, limits);
      break;
    case ImageFormat::kWebp:
      image = detail::decode_webp(bytes, limits);
      break;
    case ImageFormat::kBmp:
      image = detail::decode_bmp(bytes, limits);
      break;
    case ImageFormat::kGif:
      image = detail::decode_gif(bytes, limits);
      break;
    case ImageFormat::kUnknown:
      throw ImageError(ImageErrorKind::kUnsupportedFormat,
                       "not a JPEG, PNG, WebP, BMP or GIF image (unrecognised leading bytes)");
  }
  image.format = format;
  return image;
}

DecodedImage decode_image_file(const std::string& path, const DecodeLimits& limits) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) {
    throw ImageError(ImageErrorKind::kIo, "cannot open " + path + ": " + std::strerror(errno));
  }
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  while (size_t n = std::fread(chunk, 1, sizeof chunk, file.get())) {
    if (bytes.size() + n > limits.max_file_bytes) {
      throw ImageError(ImageErrorKind::kTooLarge, path + " is larger than the limit of " +
                                                      std::to_string(limits.max_file_bytes) +
                                                      " bytes");
    }
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  if (std::ferror(file.get())) {
    throw ImageError(ImageErrorKind::kIo, "cannot read " + path + ": " + std::strerror(errno));
  }
  try {
    return decode_image(bytes, limits);
  } catch (const ImageError& e) {
    throw ImageError(e.kind(), path + ": " + (e.what() + std::strlen(to_string(e.kind())) + 2));
  }
}

}  // namespace celeriac::image
