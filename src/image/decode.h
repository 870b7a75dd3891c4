// Decoding of JPEG, PNG, WebP, BMP and GIF (first frame) into 8-bit RGB, pixel for pixel what
// Python's `PIL.Image.open(f).convert("RGB")` gives (florence2.md section 10.2 step 1): the
// reference worker feeds exactly that to the Florence-2 processor.
//
// What "as PIL does" means per source mode: L replicates the grey value; LA, RGBA and palette
// alpha are dropped, never composited; palettes are looked up; 16-bit samples keep their high
// byte, except 16-bit greyscale (PIL mode I;16), which PIL clips to 255; CMYK JPEGs are read with
// Adobe (inverted) polarity and converted with PIL's integer formula. No EXIF rotation, no ICC or
// gamma handling (PIL applies none). JPEGs go through libjpeg-turbo with its default settings
// (ISLOW IDCT, fancy upsampling), as Pillow's decoder does.
//
// Decompression bombs: the dimensions are read from the header and checked against DecodeLimits
// before any pixel buffer is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace celeriac::image {

enum class ImageFormat { kUnknown, kJpeg, kPng, kWebp, kBmp, kGif };

const char* to_string(ImageFormat format);

// Limits checked before allocating; exceeding one is ImageErrorKind::kTooLarge.
struct DecodeLimits {
  uint64_t max_pixels = 50'000'000;       // width * height of the decoded image
  uint64_t max_file_bytes = 64ull << 20;  // size of the encoded input
  uint32_t max_dimension = 1u << 20;      // either side (keeps row sizes far from int range)
};

// An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B, no row padding.
struct DecodedImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // width * height * 3 bytes
  ImageFormat format = ImageFormat::kUnknown;
  std::string source_mode;  // PIL's mode name of the source before convert("RGB"), e.g. "P"
};

// Identifies the format from the leading magic bytes (kUnknown when none matches).
ImageFormat sniff_format(std::span<const uint8_t> bytes);

// Decodes an encoded image held in memory. Throws ImageError.
DecodedImage decode_image(std::span<const uint8_t> bytes, const DecodeLimits& limits = {});

// Reads and decodes a file; a file over limits.max_file_bytes is refused before it is read.
DecodedImage decode_image_file(const std::string& path, const DecodeLimits& limits = {});

}  // namespace celeriac::image
