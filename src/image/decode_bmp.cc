// A small Windows BMP reader that follows Pillow's BmpImagePlugin: OS/2 (12-byte) and Windows
// v3-v5 headers; 1/4/8-bit palettes (RAW, RLE4, RLE8), 16-bit 5-5-5 and 5-6-5, 24-bit and 32-bit
// (BITFIELDS layouts that Pillow accepts); bottom-up and top-down rows. Where Pillow's reading
// depends on a quirk (a palette that is exactly grey is dropped and the rows are read as 1-bit or
// 8-bit grey whatever the header's depth), the consistent cases are decoded and the others refused
// as unsupported rather than guessed.
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "image/format_decoders.h"
#include "image/image_error.h"

namespace celeriac::image::detail {
namespace {

enum Compression : uint32_t { kRaw = 0, kRle8 = 1, kRle4 = 2, kBitfields = 3 };

struct Reader {
  std::span<const uint8_t> bytes;
  uint32_t u16(size_t at) const {
    need(at + 2);
    return bytes[at] | (uint32_t(bytes[at + 1]) << 8);
  }
  uint32_t u32(size_t at) const {
    need(at + 4);
    return bytes[at] | (uint32_t(bytes[at + 1]) << 8) | (uint32_t(bytes[at + 2]) << 16) |
           (uint32_t(bytes[at + 3]) << 24);
  }
  void need(size_t end) const {
    if (end > bytes.size()) throw ImageError(ImageErrorKind::kTruncated, "BMP header ends early");
  }
};

[[noreturn]] void unsupported(const std::string& what) {
  throw ImageError(ImageErrorKind::kUnsupportedFormat, "BMP " + what);
}

int byte_of_mask(uint32_t mask) {
  for (int b = 0; b < 4; ++b) {
    if (mask == (0xFFu << (8 * b))) return b;
  }
  return -1;
}

// Pillow's RLE decoder (BmpRleDecoder): fills `indices` (width * height, file row order) and stops
// quietly at the end of the data; absolute runs are aligned on the file's even offsets.
void decode_rle(std::span<const uint8_t> file, size_t pos, bool rle4, size_t width,
                std::vector<uint8_t>& indices) {
  const size_t total = indices.size();
  size_t n = 0, x = 0;
  while (n < total) {
    if (pos + 2 > file.size()) break;
    uint8_t count = file[pos], value = file[pos + 1];
    pos += 2;
    if (count != 0) {  // encoded run, clipped to the row
      size_t run = x + count > width ? (width > x ? width - x : 0) : count;
      for (size_t i = 0; i < run && n < total; ++i) {
        indices[n++] = rle4 ? (i % 2 == 0 ? value >> 4 : value & 0x0F) : value;
      }
      x += run;
    } else if (value == 0) {  // end of line
      while (n % width != 0) indices[n++] = 0;
      x = 0;
    } else if (value == 1) {  // end of bitmap
      break;
    } else if (value == 2) {  // delta
      if (pos + 2 > file.size()) break;
      size_t skip = file[pos] + size_t(file[pos + 1]) * width;
      pos += 2;
      skip = std::min(skip, total - n);
      n += skip;  // indices are zero-initialised
      x = n % width;
    } else {  // absolute run
      size_t count_px = std::min<size_t>(total - n, value);
      size_t byte_count = rle4 ? (count_px + 1) / 2 : count_px;
      size_t available = std::min(byte_count, file.size() - pos);
      for (size_t i = 0; i < available; ++i) {
        uint8_t b = file[pos + i];
        if (rle4) {
          indices[n++] = b >> 4;
          if (i * 2 + 1 < count_px) indices[n++] = b & 0x0F;
        } else {
          indices[n++] = b;
        }
      }
      pos += available;
      if (available < byte_count || n == total) break;
      x += value;
      if (pos % 2 != 0) ++pos;
    }
  }
}

}  // namespace

DecodedImage decode_bmp(std::span<const uint8_t> file, const DecodeLimits& limits) {
  Reader r{file};
  size_t offset = r.u32(10);
  const uint32_t header_size = r.u32(14);
  uint64_t width = 0, height = 0;
  uint32_t bits = 0, compression = kRaw, colors = 0, palette_padding = 4;
  bool top_down = false;
  std::array<uint32_t, 4> masks{};  // r, g, b, a
  size_t pos = 14 + header_size;    // where the palette (or 40-byte header's masks) follow
  if (header_size == 12) {
    width = r.u16(18);
    height = r.u16(20);
    bits = r.u16(24);
    palette_padding = 3;
  } else if (header_size == 40 || header_size == 52 || header_size == 56 || header_size == 64 ||
             header_size == 108 || header_size == 124) {
    r.need(14 + header_size);
    const size_t h = 18;  // header data after its size field
    width = r.u32(h);
    uint32_t raw_height = r.u32(h + 4);
    top_down = file[h + 7] == 0xFF;
    height = top_down ? (uint64_t(1) << 32) - raw_height : raw_height;
    bits = r.u16(h + 10);
    compression = r.u32(h + 12);
    colors = r.u32(h + 28);
    if (compression == kBitfields) {
      if (header_size - 4 >= 48) {
        for (int i = 0; i < (header_size - 4 >= 52 ? 4 : 3); ++i) masks[i] = r.u32(h + 36 + 4 * i);
      } else {
        for (int i = 0; i < 3; ++i) masks[i] = r.u32(pos + 4 * i);
        pos += 12;
      }
    }
  } else {
    unsupported("header type (" + std::to_string(header_size) + " bytes)");
  }
  check_dimensions(width, height, limits);

  const uint64_t palette_colors = colors != 0 ? colors : (uint64_t(1) << std::min(bits, 32u));
  if (offset == 14 + header_size && bits <= 8) offset += palette_padding * palette_colors;
  if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32) {
    unsupported("pixel depth (" + std::to_string(bits) + ")");
  }

  DecodedImage image;
  // Channel byte positions of 32-bit pixels (b, g, r order in memory by default: "BGRX").
  int r_byte = 2, g_byte = 1, b_byte = 0;
  bool rgb565 = false;
  if (compression == kBitfields) {
    if (bits == 32) {
      if (masks == std::array<uint32_t, 4>{0, 0, 0, 0}) {
        // Pillow reads all-zero masks as BGRA.
      } else {
        r_byte = byte_of_mask(masks[0]);
        g_byte = byte_of_mask(masks[1]);
        b_byte = byte_of_mask(masks[2]);
        const bool known = masks == std::array<uint32_t, 4>{0xFF0000, 0xFF00, 0xFF, 0} ||
                           masks == std::array<uint32_t, 4>{0xFF000000, 0xFF0000, 0xFF00, 0} ||
                           masks == std::array<uint32_t, 4>{0xFF000000, 0xFF00, 0xFF, 0} ||
                           masks == std::array<uint32_t, 4>{0xFF000000, 0xFF0000, 0xFF00, 0xFF} ||
                           masks == std::array<uint32_t, 4>{0xFF, 0xFF00, 0xFF0000, 0xFF000000} ||
                           masks == std::array<uint32_t, 4>{0xFF0000, 0xFF00, 0xFF, 0xFF000000} ||
                           masks == std::array<uint32_t, 4>{0xFF000000, 0xFF00, 0xFF, 0xFF0000};
        if (!known) unsupported("bitfields layout");
      }
    } else if (bits == 24) {
      if (!(masks[0] == 0xFF0000 && masks[1] == 0xFF00 && masks[2] == 0xFF)) {
        unsupported("bitfields layout");
      }
    } else if (bits == 16) {
      if (masks[0] == 0xF800 && masks[1] == 0x7E0 && masks[2] == 0x1F) {
        rgb565 = true;
      } else if (!(masks[0] == 0x7C00 && masks[1] == 0x3E0 && masks[2] == 0x1F)) {
        unsupported("bitfields layout");
      }
    } else {
      unsupported("bitfields layout");
    }
  } else if (compression == kRle8 || compression == kRle4) {
    if (bits > 8) unsupported("RLE with " + std::to_string(bits) + " bits per pixel");
  } else if (compression != kRaw) {
    unsupported("compression (" + std::to_string(compression) + ")");
  }

  // Palette, and Pillow's "grey palette" rule.
  std::array<std::array<uint8_t, 3>, 256> palette{};  // missing entries stay black
  bool grey_1bit = false;
  if (bits <= 8) {
    if (palette_colors == 0 || palette_colors > 65536) {
      unsupported("palette size (" + std::to_string(palette_colors) + ")");
    }
    const size_t palette_bytes = palette_padding * palette_colors;
    const size_t have = pos < file.size() ? std::min(palette_bytes, file.size() - pos) : 0;
    std::span<const uint8_t> entries = file.subspan(std::min(pos, file.size()), have);
    bool grey = true;
    for (uint64_t i = 0; i < palette_colors; ++i) {
      uint8_t v = palette_colors == 2 ? (i == 0 ? 0 : 255) : uint8_t(i);
      size_t at = i * palette_padding;
      if (at + 3 > entries.size() || entries[at] != v || entries[at + 1] != v ||
          entries[at + 2] != v) {
        grey = false;
      }
      if (palette_colors != 2 && i >= 256) grey = false;
    }
    for (size_t i = 0; i < 256 && i < palette_colors; ++i) {
      if (i * palette_padding + 3 > entries.size()) break;
      const uint8_t* e = entries.data() + i * palette_padding;  // B, G, R(, reserved)
      palette[i] = {e[2], e[1], e[0]};
    }
    if (grey) {
      // Pillow drops the palette and reads the rows as mode "1" (<= 2 colours) or "L".
      grey_1bit = palette_colors <= 2;
      const bool consistent =
          grey_1bit ? (bits == 1 && compression == kRaw) : (bits == 8 || compression != kRaw);
      if (!consistent)
        unsupported("grey palette of " + std::to_string(palette_colors) + " colours with " +
                    std::to_string(bits) + "-bit pixels");
      if (grey_1bit) {
        palette[0] = {0, 0, 0};
        palette[1] = {255, 255, 255};
      } else {
        for (int i = 0; i < 256; ++i) palette[i] = {uint8_t(i), uint8_t(i), uint8_t(i)};
      }
      image.source_mode = grey_1bit ? "1" : "L";
    } else {
      image.source_mode = "P";
    }
  } else {
    image.source_mode = bits == 32 && compression == kBitfields && masks[3] != 0 ? "RGBA" : "RGB";
  }

  allocate_rgb(image, static_cast<int>(width), static_cast<int>(height), limits);
  const size_t w = width, hgt = height;
  auto out_row = [&](size_t file_row) {
    size_t y = top_down ? file_row : hgt - 1 - file_row;
    return image.rgb.data() + y * w * 3;
  };

  if (compression == kRle8 || compression == kRle4) {
    std::vector<uint8_t> indices(w * hgt, 0);
    decode_rle(file, offset, compression == kRle4, w, indices);
    for (size_t row = 0; row < hgt; ++row) {
      uint8_t* out = out_row(row);
      for (size_t x = 0; x < w; ++x)
        std::memcpy(out + 3 * x, palette[indices[row * w + x]].data(), 3);
    }
    return image;
  }

  const size_t stride = ((w * bits + 31) >> 3) & ~size_t(3);
  if (offset > file.size() || (file.size() - offset) / stride < hgt) {
    throw ImageError(ImageErrorKind::kTruncated, "BMP pixel data ends before the image does");
  }
  for (size_t row = 0; row < hgt; ++row) {
    const uint8_t* in = file.data() + offset + row * stride;
    uint8_t* out = out_row(row);
    for (size_t x = 0; x < w; ++x) {
      uint8_t* px = out + 3 * x;
      switch (bits) {
        case 1:
          std::memcpy(px, palette[(in[x >> 3] >> (7 - (x & 7))) & 1].data(), 3);
          break;
        case 4:
          std::memcpy(px, palette[(in[x >> 1] >> ((x & 1) ? 0 : 4)) & 0x0F].data(), 3);
          break;
        case 8:
          std::memcpy(px, palette[in[x]].data(), 3);
          break;
        case 16: {
          unsigned v = in[2 * x] | (unsigned(in[2 * x + 1]) << 8);
          // Pillow's BGR;15 / BGR;16 unpackers: c * 255 / max with integer division.
          if (rgb565) {
            px[0] = uint8_t(((v >> 11) & 31) * 255 / 31);
            px[1] = uint8_t(((v >> 5) & 63) * 255 / 63);
          } else {
            px[0] = uint8_t(((v >> 10) & 31) * 255 / 31);
            px[1] = uint8_t(((v >> 5) & 31) * 255 / 31);
          }
          px[2] = uint8_t((v & 31) * 255 / 31);
          break;
        }
        case 24:
          px[0] = in[3 * x + 2];
          px[1] = in[3 * x + 1];
          px[2] = in[3 * x];
          break;
        case 32:
          px[0] = in[4 * x + r_byte];
          px[1] = in[4 * x + g_byte];
          px[2] = in[4 * x + b_byte];
          break;
      }
    }
  }
  return image;
}

}  // namespace celeriac::image::detail
