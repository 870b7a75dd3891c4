// Resizing of 8-bit RGB images bit for bit as Pillow's Image.resize() does for mode "RGB"
// (libImaging/Resample.c, florence2.md section 10.3): separable, horizontal pass first over only
// the rows the vertical pass reads (Pillow 13 does the vertical pass first when the height
// shrinks by more than twice as many pixels as the width), filter support widened by the
// downscale factor (antialiasing), weights in double normalised to sum 1, then 22-bit fixed point
// with rounding and clipping. A pass whose axis already has the target size is skipped; equal
// sizes copy.
#pragma once

#include <cstdint>
#include <vector>

namespace celeriac::image {

// Pillow's resampling filters with their PIL integer codes (Image.Resampling); NEAREST takes a
// different path in Pillow and is not offered.
enum class ResampleFilter { kLanczos = 1, kBilinear = 2, kBicubic = 3, kBox = 4, kHamming = 5 };

// Maps PIL's integer code (as in preprocessor_config.json "resample") to a filter; throws
// ImageError(kInvalidArgument) for NEAREST (0) and unknown codes.
ResampleFilter resample_filter_from_pil(int code);

// Which Pillow's choice of pass order to reproduce; the two differ (by rounding of the uint8
// intermediate) only when the vertical-first rule applies.
enum class PassOrder {
  kPillow13,         // Pillow >= 13 (the reference stack's): vertical first for tall reductions
  kHorizontalFirst,  // Pillow <= 12: always horizontal first
};

// Resizes src (src_width x src_height RGB, rows packed) into dst (dst_width x dst_height RGB).
void resize_rgb(const uint8_t* src, int src_width, int src_height, uint8_t* dst, int dst_width,
                int dst_height, ResampleFilter filter, PassOrder order = PassOrder::kPillow13);

std::vector<uint8_t> resize_rgb(const std::vector<uint8_t>& src, int src_width, int src_height,
                                int dst_width, int dst_height, ResampleFilter filter,
                                PassOrder order = PassOrder::kPillow13);

}  // namespace celeriac::image
