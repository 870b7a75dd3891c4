// Preprocessing as the reference image processor (transformers' CLIPImageProcessorPil) does it:
// PIL resize of the uint8 image, then numpy's float64(u8) * factor -> float32, then float32
// (x - mean) / std. The last two steps depend only on the byte value and the channel, so they are
// a 3 x 256 table computed with the same operations, which also makes them cheap.
#include "image/preprocess.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "image/image_error.h"

namespace celeriac::image {
namespace {

[[noreturn]] void invalid(const std::string& message) {
  throw ImageError(ImageErrorKind::kInvalidArgument, "preprocessor config: " + message);
}

std::array<double, 3> three_values(const nlohmann::json& v, const char* key) {
  if (v.is_number()) return {v.get<double>(), v.get<double>(), v.get<double>()};
  if (!v.is_array() || v.size() != 3) invalid(std::string(key) + " must be 3 numbers");
  return {v[0].get<double>(), v[1].get<double>(), v[2].get<double>()};
}

}  // namespace

PreprocessOptions preprocess_options_from_json(const nlohmann::json& config) {
  PreprocessOptions o;
  try {
    if (config.contains("do_resize")) o.do_resize = config["do_resize"].get<bool>();
    if (config.contains("size") && o.do_resize) {
      const auto& size = config["size"];
      if (!size.contains("height") || !size.contains("width")) {
        invalid("only a size with height and width is supported");
      }
      o.height = size["height"].get<int>();
      o.width = size["width"].get<int>();
      if (o.height <= 0 || o.width <= 0) invalid("size must be positive");
    }
    if (config.contains("resample") && !config["resample"].is_null()) {
      o.resample = resample_filter_from_pil(config["resample"].get<int>());
    }
    if (config.value("do_center_crop", false) == true) invalid("do_center_crop is not supported");
    if (config.contains("do_rescale")) o.do_rescale = config["do_rescale"].get<bool>();
    if (config.contains("rescale_factor"))
      o.rescale_factor = config["rescale_factor"].get<double>();
    if (config.contains("do_normalize")) o.do_normalize = config["do_normalize"].get<bool>();
    if (config.contains("image_mean"))
      o.image_mean = three_values(config["image_mean"], "image_mean");
    if (config.contains("image_std")) o.image_std = three_values(config["image_std"], "image_std");
  } catch (const nlohmann::json::exception& e) {
    invalid(e.what());
  }
  return o;
}

PreprocessOptions load_preprocess_options(const std::string& model_dir) {
  const std::filesystem::path path = std::filesystem::path(model_dir) / "preprocessor_config.json";
  std::ifstream in(path);
  if (!in) return {};
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    invalid(path.string() + ": " + e.what());
  }
  return preprocess_options_from_json(config);
}

std::vector<uint8_t> resize_for_model(const DecodedImage& image, const PreprocessOptions& options,
                                      int* out_width, int* out_height) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3) {
    throw ImageError(ImageErrorKind::kInvalidArgument, "preprocess of an empty or malformed image");
  }
  const int w = options.do_resize ? options.width : image.width;
  const int h = options.do_resize ? options.height : image.height;
  *out_width = w;
  *out_height = h;
  if (!options.do_resize) return image.rgb;
  return resize_rgb(image.rgb, image.width, image.height, w, h, options.resample,
                    options.pass_order);
}

void preprocess_into(const DecodedImage& image, const PreprocessOptions& options, float* chw) {
  int w = 0, h = 0;
  std::vector<uint8_t> resized = resize_for_model(image, options, &w, &h);

  // table[c][v]: float32 value of byte v in channel c, with numpy's operations and types.
  float table[3][256];
  for (int c = 0; c < 3; ++c) {
    const float mean = static_cast<float>(options.image_mean[c]);
    const float std = static_cast<float>(options.image_std[c]);
    for (int v = 0; v < 256; ++v) {
      float x = options.do_rescale
                    ? static_cast<float>(static_cast<double>(v) * options.rescale_factor)
                    : static_cast<float>(v);
      if (options.do_normalize) {
        x = (x - mean) / std;  // two float32 roundings, as numpy does them
      }
      table[c][v] = x;
    }
  }
  const size_t plane = static_cast<size_t>(w) * h;
  float* r = chw;
  float* g = chw + plane;
  float* b = chw + 2 * plane;
  const uint8_t* p = resized.data();
  for (size_t i = 0; i < plane; ++i) {
    r[i] = table[0][p[3 * i]];
    g[i] = table[1][p[3 * i + 1]];
    b[i] = table[2][p[3 * i + 2]];
  }
}

PreprocessedImage preprocess(const DecodedImage& image, const PreprocessOptions& options) {
  PreprocessedImage out;
  out.width = options.do_resize ? options.width : image.width;
  out.height = options.do_resize ? options.height : image.height;
  out.original_width = image.width;
  out.original_height = image.height;
  out.chw.resize(3 * static_cast<size_t>(out.width) * out.height);
  preprocess_into(image, options, out.chw.data());
  return out;
}

std::vector<float> preprocess_batch(std::span<const DecodedImage> images,
                                    const PreprocessOptions& options) {
  if (!options.do_resize) {
    throw ImageError(ImageErrorKind::kInvalidArgument, "a batch needs do_resize (one size)");
  }
  const size_t per_image = 3 * static_cast<size_t>(options.width) * options.height;
  std::vector<float> batch(per_image * images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    preprocess_into(images[i], options, batch.data() + i * per_image);
  }
  return batch;
}

}  // namespace celeriac::image
