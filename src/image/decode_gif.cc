// GIF, first frame, through giflib, composed as Pillow composes it: a canvas of the logical screen
// size (grown when the frame extends past it) filled with the frame's transparent index if it has
// one and index 0 otherwise, the frame's indices pasted at its offset, then looked up in the local
// (or else global) colour table; indices past the table are black. Without any colour table the
// indices are grey levels (PIL mode "L").
#include <gif_lib.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "image/format_decoders.h"
#include "image/image_error.h"

namespace celeriac::image::detail {
namespace {

struct GifSource {
  std::span<const uint8_t> bytes;
  size_t offset = 0;
  bool ran_out = false;
};

extern "C" int read_gif_bytes(GifFileType* gif, GifByteType* out, int length) {
  auto* src = static_cast<GifSource*>(gif->UserData);
  size_t n = std::min<size_t>(length, src->bytes.size() - src->offset);
  if (n < static_cast<size_t>(length)) src->ran_out = true;
  std::memcpy(out, src->bytes.data() + src->offset, n);
  src->offset += n;
  return static_cast<int>(n);
}

struct GifCloser {
  void operator()(GifFileType* gif) const {
    int error = 0;
    DGifCloseFile(gif, &error);
  }
};

[[noreturn]] void fail(const GifSource& src, int error, const char* stage) {
  const char* text = GifErrorString(error);
  std::string message = "GIF ";  // built by appends: GCC 12 warns falsely on chained operator+
  message += stage;
  message += ": ";
  message += text != nullptr ? text : "error";
  throw ImageError(src.ran_out ? ImageErrorKind::kTruncated : ImageErrorKind::kCorrupt, message);
}

}  // namespace

DecodedImage decode_gif(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  GifSource src{bytes};
  int error = 0;
  std::unique_ptr<GifFileType, GifCloser> gif(DGifOpen(&src, read_gif_bytes, &error));
  if (!gif) fail(src, error, "header");

  int transparent = -1;
  for (;;) {
    GifRecordType record;
    if (DGifGetRecordType(gif.get(), &record) == GIF_ERROR) fail(src, gif->Error, "record");
    if (record == TERMINATE_RECORD_TYPE) {
      throw ImageError(ImageErrorKind::kCorrupt, "GIF without any image");
    }
    if (record == EXTENSION_RECORD_TYPE) {
      int code = 0;
      GifByteType* block = nullptr;
      if (DGifGetExtension(gif.get(), &code, &block) == GIF_ERROR)
        fail(src, gif->Error, "extension");
      // Graphic control extension: bit 0 of the flags says byte 3 is the transparent index.
      if (code == GRAPHICS_EXT_FUNC_CODE && block != nullptr && block[0] >= 4) {
        transparent = (block[1] & 1) ? block[4] : -1;
      }
      while (block != nullptr) {
        if (DGifGetExtensionNext(gif.get(), &block) == GIF_ERROR)
          fail(src, gif->Error, "extension");
      }
      continue;
    }
    if (record != IMAGE_DESC_RECORD_TYPE) continue;
    if (DGifGetImageDesc(gif.get()) == GIF_ERROR) fail(src, gif->Error, "image descriptor");
    break;
  }

  const GifImageDesc& frame = gif->Image;
  if (frame.Width <= 0 || frame.Height <= 0) {
    throw ImageError(ImageErrorKind::kCorrupt, "GIF frame with a zero dimension");
  }
  const uint64_t canvas_w = std::max<uint64_t>(gif->SWidth, uint64_t(frame.Left) + frame.Width);
  const uint64_t canvas_h = std::max<uint64_t>(gif->SHeight, uint64_t(frame.Top) + frame.Height);
  check_dimensions(canvas_w, canvas_h, limits);

  // The colour table in force; Pillow drops one that is exactly grey (i, i, i) and reads indices
  // as grey levels then, which differs from a lookup only for indices past the table.
  const ColorMapObject* map = frame.ColorMap != nullptr ? frame.ColorMap : gif->SColorMap;
  std::array<std::array<uint8_t, 3>, 256> palette{};
  bool grey = true;
  if (map != nullptr) {
    for (int i = 0; i < map->ColorCount && i < 256; ++i) {
      const GifColorType& c = map->Colors[i];
      palette[i] = {c.Red, c.Green, c.Blue};
      if (c.Red != i || c.Green != i || c.Blue != i) grey = false;
    }
  }
  if (grey) {
    for (int i = 0; i < 256; ++i) palette[i] = {uint8_t(i), uint8_t(i), uint8_t(i)};
  }

  DecodedImage image;
  image.source_mode = std::string(
      1, grey ? 'L' : 'P');  // (a literal here trips a GCC 12 -Wrestrict false positive)
  const size_t cw = canvas_w, ch = canvas_h;
  std::vector<uint8_t> indices(cw * ch, static_cast<uint8_t>(transparent >= 0 ? transparent : 0));
  std::vector<GifPixelType> line(frame.Width);
  auto read_line = [&](int y) {
    if (DGifGetLine(gif.get(), line.data(), frame.Width) == GIF_ERROR) {
      fail(src, gif->Error, "image data");
    }
    std::memcpy(&indices[(size_t(frame.Top) + y) * cw + frame.Left], line.data(), frame.Width);
  };
  if (frame.Interlace) {
    static constexpr int kStart[4] = {0, 4, 2, 1}, kStep[4] = {8, 8, 4, 2};
    for (int pass = 0; pass < 4; ++pass) {
      for (int y = kStart[pass]; y < frame.Height; y += kStep[pass]) read_line(y);
    }
  } else {
    for (int y = 0; y < frame.Height; ++y) read_line(y);
  }

  allocate_rgb(image, static_cast<int>(cw), static_cast<int>(ch), limits);
  for (size_t i = 0; i < cw * ch; ++i)
    std::memcpy(&image.rgb[3 * i], palette[indices[i]].data(), 3);
  return image;
}

}  // namespace celeriac::image::detail
