// `celeriac preprocess IMAGE`: decode an image and run Florence-2's preprocessing on it, for
// debugging and for comparing with the Python processor (writes pixel_values as .npy, and the
// 8-bit resized image as a binary PPM).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "cli/commands.h"
#include "image/decode.h"
#include "image/image_error.h"
#include "image/preprocess.h"

namespace celeriac::cli {
namespace {

struct PreprocessArgs {
  std::string image;
  std::string model;        // folder with preprocessor_config.json (Florence-2 defaults if empty)
  std::string out_npy;      // float32 pixel_values, shape (1, 3, H, W)
  std::string resized_ppm;  // the uint8 RGB image after the PIL resize
};

void write_npy(const std::string& path, const image::PreprocessedImage& p) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, " +
                       std::to_string(p.height) + ", " + std::to_string(p.width) + "), }";
  // NPY v1: magic, version, little-endian header length; header padded to 64 bytes with '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.put(static_cast<char>(len & 0xFF));
  out.put(static_cast<char>(len >> 8));
  out << header;
  out.write(reinterpret_cast<const char*>(p.chw.data()), p.chw.size() * sizeof(float));
  if (!out) throw std::runtime_error("cannot write " + path);
}

int run_preprocess(const PreprocessArgs& a) {
  using clock = std::chrono::steady_clock;
  try {
    const image::PreprocessOptions options =
        a.model.empty() ? image::PreprocessOptions{} : image::load_preprocess_options(a.model);
    const auto t0 = clock::now();
    const image::DecodedImage decoded = image::decode_image_file(a.image);
    const auto t1 = clock::now();
    const image::PreprocessedImage p = image::preprocess(decoded, options);
    const auto t2 = clock::now();
    double sum = 0, lo = p.chw.empty() ? 0 : p.chw[0], hi = lo;
    for (float v : p.chw) {
      sum += v;
      lo = std::min<double>(lo, v);
      hi = std::max<double>(hi, v);
    }
    std::printf("%s: %s %s %dx%d -> pixel_values 1x3x%dx%d min %.6f max %.6f mean %.9f\n",
                a.image.c_str(), image::to_string(decoded.format), decoded.source_mode.c_str(),
                decoded.width, decoded.height, p.height, p.width, lo, hi,
                p.chw.empty() ? 0.0 : sum / p.chw.size());
    std::printf("decode %.2f ms, preprocess %.2f ms\n",
                std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(t2 - t1).count());
    if (!a.out_npy.empty()) write_npy(a.out_npy, p);
    if (!a.resized_ppm.empty()) {
      int w = 0, h = 0;
      const auto rgb = image::resize_for_model(decoded, options, &w, &h);
      std::ofstream out(a.resized_ppm, std::ios::binary);
      out << "P6\n" << w << " " << h << "\n255\n";
      out.write(reinterpret_cast<const char*>(rgb.data()), rgb.size());
      if (!out) throw std::runtime_error("cannot write " + a.resized_ppm);
    }
    return 0;
  } catch (const image::ImageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}

}  // namespace

void add_image_commands(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<PreprocessArgs>();
  auto* cmd = app.add_subcommand(
      "preprocess", "Decode an image and compute Florence-2's pixel_values (as the processor)");
  cmd->add_option("image", args->image, "JPEG, PNG, WebP, BMP or GIF file")->required();
  cmd->add_option("--model", args->model, "Folder with preprocessor_config.json");
  cmd->add_option("--out", args->out_npy, "Write pixel_values (float32, 1x3xHxW) as .npy");
  cmd->add_option("--resized", args->resized_ppm, "Write the resized 8-bit image as .ppm");
  cmd->callback([args, &exit_code] { exit_code = run_preprocess(*args); });
}

}  // namespace celeriac::cli
