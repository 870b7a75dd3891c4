// Florence-2's image preprocessing (the CLIPImageProcessor settings of preprocessor_config.json,
// florence2.md section 10): resize to 768x768 with PIL bicubic (aspect ratio not kept), rescale
// by 1/255 in double then float32, normalise per channel in float32 with the ImageNet mean/std,
// CHW float32 with channels R, G, B. Matches the reference processor bit for bit.
//
// Batches: preprocess_into() writes one image's 3 x height x width floats wherever the caller's
// batch tensor wants them; the original size (what post-processing scales boxes to) is kept with
// the decoded image.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "image/decode.h"
#include "image/resize.h"

namespace celeriac::image {

struct PreprocessOptions {
  bool do_resize = true;                                  // "do_resize"
  int width = 768;                                        // "size": {"width"}
  int height = 768;                                       // "size": {"height"}
  ResampleFilter resample = ResampleFilter::kBicubic;     // "resample": 3
  bool do_rescale = true;                                 // "do_rescale"
  double rescale_factor = 0.00392156862745098;            // "rescale_factor" (1/255)
  bool do_normalize = true;                               // "do_normalize"
  std::array<double, 3> image_mean{0.485, 0.456, 0.406};  // "image_mean" (ImageNet)
  std::array<double, 3> image_std{0.229, 0.224, 0.225};   // "image_std" (ImageNet)
  // Not in the config: which Pillow the resize reproduces. The reference stack pins Pillow 13;
  // kHorizontalFirst matches Pillow <= 12 (e.g. the transformers 4.42 seed environments).
  PassOrder pass_order = PassOrder::kPillow13;
};

// Reads the options from a parsed preprocessor_config.json; keys that are absent keep their
// defaults. Throws ImageError(kInvalidArgument) for settings this implementation does not
// reproduce (center crop, shortest-edge sizes, NEAREST, other channel counts).
PreprocessOptions preprocess_options_from_json(const nlohmann::json& config);

// Reads `model_dir`/preprocessor_config.json when it exists, Florence-2's defaults otherwise.
PreprocessOptions load_preprocess_options(const std::string& model_dir);

struct PreprocessedImage {
  int width = 0;           // of the tensor (768)
  int height = 0;          // of the tensor (768)
  std::vector<float> chw;  // 3 * height * width
  int original_width = 0;  // of the decoded image, for post-processing
  int original_height = 0;
};

// The uint8 RGB image the model sees before rescaling (PIL's resize output): useful for checks.
std::vector<uint8_t> resize_for_model(const DecodedImage& image, const PreprocessOptions& options,
                                      int* out_width, int* out_height);

// Writes 3 * out_height * out_width floats (CHW) to `chw`; the output size is the options' size
// when do_resize, else the image's.
void preprocess_into(const DecodedImage& image, const PreprocessOptions& options, float* chw);

PreprocessedImage preprocess(const DecodedImage& image, const PreprocessOptions& options = {});

// A batch tensor N x 3 x height x width (the options' size; do_resize must be on so that every
// image has it), images in order.
std::vector<float> preprocess_batch(std::span<const DecodedImage> images,
                                    const PreprocessOptions& options = {});

}  // namespace celeriac::image
