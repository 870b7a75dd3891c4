// PNG through libpng, with the sample conversions of Pillow's PNG reader and convert("RGB"):
// 1/2/4-bit grey scaled to 0..255 (x255, x85, x17), 16-bit colour and grey+alpha keep the high
// byte, 16-bit grey (PIL "I;16") is clipped to 255, palettes are looked up (missing entries are
// black), alpha and tRNS are dropped. No gamma, ICC or background handling, as in PIL.
//
// libpng reports fatal errors through a longjmp; the functions that call into it keep only
// trivially destructible locals.
#include <png.h>

#include <csetjmp>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "image/format_decoders.h"
#include "image/image_error.h"

namespace celeriac::image::detail {
namespace {

struct PngJob {
  png_structp png = nullptr;
  png_infop info = nullptr;
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t offset = 0;
  bool truncated = false;
  char message[256] = {};
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0, interlace = 0;
  png_color palette[256] = {};
  int palette_size = 0;
};

extern "C" void on_png_error(png_structp png, png_const_charp message) {
  auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
  std::snprintf(job->message, sizeof job->message, "%s", message);
  png_longjmp(png, 1);
}

extern "C" void on_png_warning(png_structp, png_const_charp) {}

extern "C" void on_png_read(png_structp png, png_bytep out, size_t length) {
  auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (job->size - job->offset < length) {
    job->truncated = true;
    png_error(png, "data ends before the image does");
  }
  std::memcpy(out, job->data + job->offset, length);
  job->offset += length;
}

bool read_info(PngJob* job, uint32_t max_dimension) {
  if (setjmp(png_jmpbuf(job->png))) return false;
  png_set_read_fn(job->png, job, on_png_read);
  png_set_user_limits(job->png, max_dimension, max_dimension);
  png_read_info(job->png, job->info);
  png_get_IHDR(job->png, job->info, &job->width, &job->height, &job->bit_depth, &job->color_type,
               &job->interlace, nullptr, nullptr);
  if (job->color_type == PNG_COLOR_TYPE_PALETTE) {
    png_colorp palette = nullptr;
    int n = 0;
    if (png_get_PLTE(job->png, job->info, &palette, &n) != 0 && palette != nullptr) {
      job->palette_size = n > 256 ? 256 : n;
      std::memcpy(job->palette, palette, sizeof(png_color) * job->palette_size);
    }
  }
  return true;
}

// Sets up the row transforms; png_read_update_info allocates row buffers, so this runs only after
// the dimensions passed the limits.
bool start_rows(PngJob* job) {
  if (setjmp(png_jmpbuf(job->png))) return false;
  if (job->bit_depth < 8) png_set_packing(job->png);  // one byte per sample, values unscaled
  png_set_interlace_handling(job->png);
  png_read_update_info(job->png, job->info);
  return true;
}

// Reads all rows into rows[0..height) (interlaced images need the whole image at once).
bool read_rows(PngJob* job, png_bytep* rows) {
  if (setjmp(png_jmpbuf(job->png))) return false;
  png_read_image(job->png, rows);
  return true;
}

// Reads the next row of a non-interlaced image.
bool read_row(PngJob* job, png_bytep row) {
  if (setjmp(png_jmpbuf(job->png))) return false;
  png_read_row(job->png, row, nullptr);
  return true;
}

struct PngJobDeleter {
  void operator()(PngJob* job) const {
    png_destroy_read_struct(&job->png, job->info ? &job->info : nullptr, nullptr);
    delete job;
  }
};

[[noreturn]] void fail(const PngJob& job) {
  throw ImageError(job.truncated ? ImageErrorKind::kTruncated : ImageErrorKind::kCorrupt,
                   std::string("PNG: ") + job.message);
}

const char* pil_mode(int color_type, int bit_depth) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
      return bit_depth == 1 ? "1" : bit_depth == 16 ? "I;16" : "L";
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      return "LA";
    case PNG_COLOR_TYPE_PALETTE:
      return "P";
    case PNG_COLOR_TYPE_RGB:
      return "RGB";
    default:
      return "RGBA";
  }
}

// Converts one decoded row (libpng layout after png_set_packing) into RGB.
void convert_row(const PngJob& job, const uint8_t* in, uint8_t* out) {
  const size_t w = job.width;
  const bool wide = job.bit_depth == 16;
  switch (job.color_type) {
    case PNG_COLOR_TYPE_GRAY:
      if (wide) {
        for (size_t x = 0; x < w; ++x) {
          unsigned v = (unsigned(in[2 * x]) << 8) | in[2 * x + 1];
          out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = v > 255 ? 255 : uint8_t(v);
        }
      } else {
        const int scale = job.bit_depth == 1   ? 255
                          : job.bit_depth == 2 ? 85
                          : job.bit_depth == 4 ? 17
                                               : 1;
        for (size_t x = 0; x < w; ++x) {
          out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = uint8_t(in[x] * scale);
        }
      }
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
      const size_t step = wide ? 4 : 2;
      for (size_t x = 0; x < w; ++x) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[step * x];
      break;
    }
    case PNG_COLOR_TYPE_PALETTE:
      for (size_t x = 0; x < w; ++x) {
        const png_color& c = job.palette[in[x]];
        out[3 * x] = c.red;
        out[3 * x + 1] = c.green;
        out[3 * x + 2] = c.blue;
      }
      break;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA: {
      const size_t sample = wide ? 2 : 1;
      const size_t step = (job.color_type == PNG_COLOR_TYPE_RGB ? 3 : 4) * sample;
      for (size_t x = 0; x < w; ++x) {
        for (int c = 0; c < 3; ++c) out[3 * x + c] = in[step * x + c * sample];  // high byte
      }
      break;
    }
  }
}

}  // namespace

DecodedImage decode_png(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  std::unique_ptr<PngJob, PngJobDeleter> job(new PngJob);
  job->data = bytes.data();
  job->size = bytes.size();
  job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job.get(), on_png_error, on_png_warning);
  if (job->png == nullptr) throw std::bad_alloc();
  job->info = png_create_info_struct(job->png);
  if (job->info == nullptr) throw std::bad_alloc();

  // libpng's own side limit is lifted so that our check (before any row buffer) gives the error.
  if (!read_info(job.get(), 0x7fffffff)) fail(*job);
  DecodedImage image;
  image.source_mode = pil_mode(job->color_type, job->bit_depth);
  allocate_rgb(image, static_cast<int>(job->width), static_cast<int>(job->height), limits);
  if (!start_rows(job.get())) fail(*job);

  const size_t rowbytes = png_get_rowbytes(job->png, job->info);
  const size_t out_stride = static_cast<size_t>(job->width) * 3;
  if (job->interlace != PNG_INTERLACE_NONE) {
    std::vector<uint8_t> raw(rowbytes * job->height);
    std::vector<png_bytep> rows(job->height);
    for (size_t y = 0; y < job->height; ++y) rows[y] = raw.data() + y * rowbytes;
    if (!read_rows(job.get(), rows.data())) fail(*job);
    for (size_t y = 0; y < job->height; ++y) {
      convert_row(*job, rows[y], image.rgb.data() + y * out_stride);
    }
  } else {
    std::vector<uint8_t> row(rowbytes);
    for (size_t y = 0; y < job->height; ++y) {
      if (!read_row(job.get(), row.data())) fail(*job);
      convert_row(*job, row.data(), image.rgb.data() + y * out_stride);
    }
  }
  return image;
}

}  // namespace celeriac::image::detail
