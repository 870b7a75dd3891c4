// JPEG through libjpeg-turbo, set up as Pillow's decoder sets it up: library defaults (ISLOW IDCT,
// fancy upsampling), output colour space by component count (1 -> grey, 3 -> RGB, 4 -> CMYK read
// with Adobe's inverted polarity, as PIL's "CMYK;I" raw mode), then PIL's convert("RGB").
//
// libjpeg reports fatal errors through a longjmp; the functions that call into it keep only
// trivially destructible locals so that jump skips no destructor.
#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

// jpeglib.h needs size_t and FILE declared first.
// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on

#include "image/format_decoders.h"
#include "image/image_error.h"

namespace celeriac::image::detail {
namespace {

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool premature_end;  // libjpeg met the end of data and faked an EOI: PIL calls that truncated
};

extern "C" void on_jpeg_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

extern "C" void on_jpeg_message(j_common_ptr cinfo, int level) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) err->premature_end = true;
  // Other warnings (corrupt data that libjpeg recovers from) are ignored, as Pillow ignores them.
}

struct JpegJob {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  const uint8_t* data;
  size_t size;
};

// Returns false after a libjpeg error (message in job->err.message).
bool read_header(JpegJob* job) {
  if (setjmp(job->err.jump)) return false;
  jpeg_mem_src(&job->cinfo, job->data, static_cast<unsigned long>(job->size));
  jpeg_read_header(&job->cinfo, TRUE);
  return true;
}

// Decodes into out (width * height * components bytes, already allocated).
bool read_pixels(JpegJob* job, uint8_t* out) {
  if (setjmp(job->err.jump)) return false;
  jpeg_start_decompress(&job->cinfo);
  size_t stride = static_cast<size_t>(job->cinfo.output_width) * job->cinfo.output_components;
  while (job->cinfo.output_scanline < job->cinfo.output_height) {
    JSAMPROW row = out + stride * job->cinfo.output_scanline;
    jpeg_read_scanlines(&job->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&job->cinfo);
  return true;
}

bool destroy(JpegJob* job) {
  if (setjmp(job->err.jump)) return false;
  jpeg_destroy_decompress(&job->cinfo);
  return true;
}

[[noreturn]] void fail(JpegJob* job, const char* stage) {
  std::string message = std::string("JPEG ") + stage + ": " + job->err.message;
  destroy(job);
  throw ImageError(job->err.premature_end ? ImageErrorKind::kTruncated : ImageErrorKind::kCorrupt,
                   message);
}

}  // namespace

DecodedImage decode_jpeg(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  auto job = std::make_unique<JpegJob>();
  std::memset(job.get(), 0, sizeof(JpegJob));
  job->data = bytes.data();
  job->size = bytes.size();
  job->cinfo.err = jpeg_std_error(&job->err.pub);
  job->err.pub.error_exit = on_jpeg_error;
  job->err.pub.emit_message = on_jpeg_message;
  jpeg_create_decompress(&job->cinfo);

  if (!read_header(job.get())) fail(job.get(), "header");
  jpeg_decompress_struct& cinfo = job->cinfo;
  DecodedImage image;
  switch (cinfo.num_components) {
    case 1:
      cinfo.out_color_space = JCS_GRAYSCALE;
      image.source_mode = "L";
      break;
    case 3:
      cinfo.out_color_space = JCS_RGB;
      image.source_mode = "RGB";
      break;
    case 4:
      cinfo.out_color_space = JCS_CMYK;  // libjpeg turns YCCK into CMYK
      image.source_mode = "CMYK";
      break;
    default:
      destroy(job.get());
      throw ImageError(ImageErrorKind::kUnsupportedFormat,
                       "JPEG with " + std::to_string(cinfo.num_components) + " components");
  }
  try {
    check_dimensions(cinfo.image_width, cinfo.image_height, limits);
  } catch (...) {
    destroy(job.get());
    throw;
  }
  const int width = static_cast<int>(cinfo.image_width);
  const int height = static_cast<int>(cinfo.image_height);
  const int components = cinfo.num_components;
  std::vector<uint8_t> raw;
  if (components != 3) raw.resize(static_cast<size_t>(width) * height * components);
  allocate_rgb(image, width, height, limits);
  uint8_t* target = components == 3 ? image.rgb.data() : raw.data();
  if (!read_pixels(job.get(), target)) fail(job.get(), "data");
  if (job->err.premature_end) {
    destroy(job.get());
    throw ImageError(ImageErrorKind::kTruncated, "JPEG data ends before the image does");
  }
  destroy(job.get());

  const size_t pixels = static_cast<size_t>(width) * height;
  uint8_t* rgb = image.rgb.data();
  if (components == 1) {
    for (size_t i = 0; i < pixels; ++i) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = raw[i];
  } else if (components == 4) {
    for (size_t i = 0; i < pixels; ++i) {
      const uint8_t* p = &raw[4 * i];
      // Adobe CMYK JPEGs store inverted samples; PIL reads them as "CMYK;I" (255 - v).
      uint8_t k = 255 - p[3];
      for (int c = 0; c < 3; ++c) rgb[3 * i + c] = cmyk_channel_to_rgb(255 - p[c], k);
    }
  }
  return image;
}

}  // namespace celeriac::image::detail
