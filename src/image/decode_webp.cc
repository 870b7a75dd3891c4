// WebP (lossy, lossless, alpha, animated) through libwebp's animation decoder, as Pillow decodes
// every WebP file: the first frame drawn on a canvas cleared to transparent black, RGBA
// (non-premultiplied), then alpha dropped. The canvas size is checked against the limits from the
// container header before the decoder allocates it.
#include <webp/decode.h>
#include <webp/demux.h>

#include <memory>
#include <string>

#include "image/format_decoders.h"
#include "image/image_error.h"

namespace celeriac::image::detail {

DecodedImage decode_webp(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  WebPBitstreamFeatures features;
  VP8StatusCode status = WebPGetFeatures(bytes.data(), bytes.size(), &features);
  if (status == VP8_STATUS_NOT_ENOUGH_DATA) {
    throw ImageError(ImageErrorKind::kTruncated, "WebP header ends early");
  }
  if (status != VP8_STATUS_OK) {
    throw ImageError(ImageErrorKind::kCorrupt,
                     "WebP header unreadable (libwebp status " + std::to_string(status) + ")");
  }
  check_dimensions(static_cast<uint64_t>(features.width), static_cast<uint64_t>(features.height),
                   limits);

  WebPAnimDecoderOptions options;
  if (!WebPAnimDecoderOptionsInit(&options)) {
    throw ImageError(ImageErrorKind::kUnsupportedFormat, "libwebp demux version mismatch");
  }
  options.color_mode = MODE_RGBA;
  options.use_threads = 0;
  WebPData data{bytes.data(), bytes.size()};
  std::unique_ptr<WebPAnimDecoder, void (*)(WebPAnimDecoder*)> decoder(
      WebPAnimDecoderNew(&data, &options), &WebPAnimDecoderDelete);
  if (!decoder) {
    // The demuxer refuses a container whose chunks run past the end of the data.
    throw ImageError(ImageErrorKind::kTruncated, "WebP container incomplete or invalid");
  }
  WebPAnimInfo info;
  if (!WebPAnimDecoderGetInfo(decoder.get(), &info)) {
    throw ImageError(ImageErrorKind::kCorrupt, "WebP container info unreadable");
  }
  DecodedImage image;
  image.source_mode = features.has_alpha ? "RGBA" : "RGB";
  allocate_rgb(image, static_cast<int>(info.canvas_width), static_cast<int>(info.canvas_height),
               limits);
  uint8_t* rgba = nullptr;
  int timestamp = 0;
  if (!WebPAnimDecoderGetNext(decoder.get(), &rgba, &timestamp)) {
    throw ImageError(ImageErrorKind::kTruncated, "WebP frame data incomplete or invalid");
  }
  const size_t pixels = static_cast<size_t>(image.width) * image.height;
  uint8_t* rgb = image.rgb.data();
  for (size_t i = 0; i < pixels; ++i) {
    rgb[3 * i] = rgba[4 * i];
    rgb[3 * i + 1] = rgba[4 * i + 1];
    rgb[3 * i + 2] = rgba[4 * i + 2];
  }
  return image;
}

}  // namespace celeriac::image::detail
