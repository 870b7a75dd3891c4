// Internal interface between decode.cc (format sniffing, limits, file reading) and one decoder per
// format. Each decoder checks the header's dimensions with check_dimensions() before allocating
// pixels and returns RGB as PIL's convert("RGB") would.
#pragma once

#include <cstdint>
#include <span>

#include "image/decode.h"

namespace celeriac::image::detail {

// Throws ImageErrorKind::kTooLarge (or kCorrupt for zero sizes) unless width x height fits limits.
void check_dimensions(uint64_t width, uint64_t height, const DecodeLimits& limits);

// Allocates the RGB buffer of `image` once its size is known and checked.
void allocate_rgb(DecodedImage& image, int width, int height, const DecodeLimits& limits);

DecodedImage decode_jpeg(std::span<const uint8_t> bytes, const DecodeLimits& limits);
DecodedImage decode_png(std::span<const uint8_t> bytes, const DecodeLimits& limits);
DecodedImage decode_webp(std::span<const uint8_t> bytes, const DecodeLimits& limits);
DecodedImage decode_bmp(std::span<const uint8_t> bytes, const DecodeLimits& limits);
DecodedImage decode_gif(std::span<const uint8_t> bytes, const DecodeLimits& limits);

// PIL's CMYK -> RGB (Convert.c cmyk2rgb): channel = (255 - k) - round-ish((255 - k) * c / 255).
inline uint8_t cmyk_channel_to_rgb(uint8_t c, uint8_t k) {
  int nk = 255 - k;
  int t = c * nk + 128;  // PIL's MULDIV255: ((t >> 8) + t) >> 8
  int v = nk - (((t >> 8) + t) >> 8);
  return static_cast<uint8_t>(v < 0 ? 0 : v);
}

}  // namespace celeriac::image::detail
