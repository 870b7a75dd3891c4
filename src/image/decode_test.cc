// Decoding against Pillow: every fixture image decodes to the bytes of PIL's
// Image.open(f).convert("RGB") (SHA-256 from goldens.json), and bad inputs give typed errors.
#include "image/decode.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <set>

#include "image/image_error.h"
#include "image/test_support.h"

namespace celeriac::image {
namespace {

using testing::data_dir;
using testing::fixture;
using testing::goldens;
using testing::read_bytes;
using testing::sha256_hex;

class DecodeGolden : public ::testing::TestWithParam<size_t> {};

TEST_P(DecodeGolden, MatchesPilConvertRgb) {
  const auto& g = goldens()["images"][GetParam()];
  SCOPED_TRACE(g["file"].get<std::string>());
  DecodedImage image = decode_image_file((data_dir() / g["file"].get<std::string>()).string());
  ASSERT_EQ(image.width, g["width"].get<int>());
  ASSERT_EQ(image.height, g["height"].get<int>());
  ASSERT_EQ(image.rgb.size(), size_t(image.width) * image.height * 3);
  for (const auto& s : g["decoded_samples"]) {
    const size_t at = (s[0].get<size_t>() * image.width + s[1].get<size_t>()) * 3;
    EXPECT_EQ((std::array<int, 3>{image.rgb[at], image.rgb[at + 1], image.rgb[at + 2]}),
              (std::array<int, 3>{s[2].get<int>(), s[3].get<int>(), s[4].get<int>()}))
        << "pixel y=" << s[0] << " x=" << s[1];
  }
  EXPECT_EQ(sha256_hex(image.rgb.data(), image.rgb.size()), g["decoded_sha256"].get<std::string>());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DecodeGolden,
                         ::testing::Range<size_t>(0, goldens()["images"].size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           std::string name = goldens()["images"][info.param]["file"];
                           name = name.substr(name.find('/') + 1);
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(Decode, FixtureSetCoversFormatsAndModes) {
  std::set<std::string> formats, modes;
  for (const auto& g : goldens()["images"]) {
    std::string file = g["file"];
    formats.insert(file.substr(file.rfind('.') + 1));
    modes.insert(g["mode"].get<std::string>());
  }
  EXPECT_GE(goldens()["images"].size(), 50u);
  EXPECT_EQ(formats, (std::set<std::string>{"bmp", "gif", "jpg", "png", "webp"}));
  for (const char* mode : {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"}) {
    EXPECT_TRUE(modes.count(mode)) << mode;
  }
}

ImageErrorKind kind_of_error(const std::vector<uint8_t>& bytes, const DecodeLimits& limits = {}) {
  try {
    decode_image(bytes, limits);
  } catch (const ImageError& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no error";
  return ImageErrorKind::kInvalidArgument;
}

TEST(Decode, BadInputFilesGiveTypedErrors) {
  for (const auto& e : goldens()["errors"]) {
    const std::string file = e["file"];
    SCOPED_TRACE(file);
    const std::string kind = e["kind"];
    ImageErrorKind expected = kind == "truncated" ? ImageErrorKind::kTruncated
                              : kind == "empty"   ? ImageErrorKind::kEmpty
                                                  : ImageErrorKind::kUnsupportedFormat;
    try {
      decode_image_file((data_dir() / file).string());
      ADD_FAILURE() << "decoded a bad input";
    } catch (const ImageError& err) {
      EXPECT_EQ(err.kind(), expected) << err.what();
      EXPECT_NE(std::string(err.what()).find(file.substr(file.find('/') + 1)), std::string::npos)
          << "the message names the file: " << err.what();
    }
  }
}

TEST(Decode, EveryTruncationOfAnImageIsAnErrorNotACrash) {
  for (const char* name : {"jpeg_420_q90.jpg", "png_rgb.png", "webp_lossy.webp", "bmp_rgb24.bmp",
                           "gif_p.gif", "bmp_rle8.bmp", "png_rgb_adam7.png", "jpeg_progressive.jpg",
                           "webp_animated.webp", "gif_interlaced.gif"}) {
    std::vector<uint8_t> bytes = read_bytes(fixture(name));
    for (size_t n = 1; n < bytes.size(); n += 1 + n / 16) {
      std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
      try {
        decode_image(cut);
      } catch (const ImageError&) {
      }
    }
  }
}

// Corrupted headers and data (deterministic byte flips, including in the size fields) give an
// ImageError or a decoded image within the limits, never a crash: run under the sanitizer build.
TEST(Decode, MutatedImagesGiveErrorsNotCrashes) {
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  DecodeLimits limits;
  limits.max_pixels = 4'000'000;
  for (const char* name :
       {"jpeg_420_q90.jpg", "jpeg_progressive.jpg", "jpeg_cmyk.jpg", "png_p4_trns.png",
        "png_rgb_adam7.png", "png_grey16_wide.png", "webp_lossy_alpha.webp", "webp_lossless.webp",
        "bmp_rle4.bmp", "bmp_rle8.bmp", "bmp_565.bmp", "bmp_os2_p4.bmp", "bmp_bgra32_v5.bmp",
        "gif_offset_transparent.gif", "gif_interlaced.gif"}) {
    const std::vector<uint8_t> original = read_bytes(fixture(name));
    for (int round = 0; round < 150; ++round) {
      std::vector<uint8_t> bytes = original;
      const int flips = 1 + int(next() % 4);
      for (int f = 0; f < flips; ++f) {
        // Half of the flips land in the first 64 bytes, where the headers are.
        size_t span = (next() & 1) ? std::min<size_t>(64, bytes.size()) : bytes.size();
        bytes[next() % span] = uint8_t(next());
      }
      try {
        DecodedImage image = decode_image(bytes, limits);
        ASSERT_EQ(image.rgb.size(), size_t(image.width) * image.height * 3) << name;
      } catch (const ImageError&) {
      }
    }
  }
}

TEST(Decode, MissingFileIsAnIoError) {
  try {
    decode_image_file("/nonexistent/picture.png");
    FAIL();
  } catch (const ImageError& e) {
    EXPECT_EQ(e.kind(), ImageErrorKind::kIo);
  }
}

TEST(Decode, SniffsFormats) {
  EXPECT_EQ(sniff_format(read_bytes(fixture("jpeg_420_q90.jpg"))), ImageFormat::kJpeg);
  EXPECT_EQ(sniff_format(read_bytes(fixture("png_rgb.png"))), ImageFormat::kPng);
  EXPECT_EQ(sniff_format(read_bytes(fixture("webp_lossy.webp"))), ImageFormat::kWebp);
  EXPECT_EQ(sniff_format(read_bytes(fixture("bmp_rgb24.bmp"))), ImageFormat::kBmp);
  EXPECT_EQ(sniff_format(read_bytes(fixture("gif_p.gif"))), ImageFormat::kGif);
  EXPECT_EQ(sniff_format(std::vector<uint8_t>{'h', 'i'}), ImageFormat::kUnknown);
}

// --- decompression bombs: headers claiming 10000 x 10000 (100 megapixels) ----------------------

void put_be32(std::vector<uint8_t>& v, size_t at, uint32_t x) {
  v[at] = x >> 24;
  v[at + 1] = x >> 16;
  v[at + 2] = x >> 8;
  v[at + 3] = x;
}

std::vector<uint8_t> png_header_claiming(uint32_t w, uint32_t h) {
  // Signature, IHDR (RGB 8-bit) with its CRC, then a tiny IDAT that could never fill it.
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0,
                              13,   'I', 'H', 'D', 'R',  0,    0,    0,    0, 0, 0,
                              0,    0,   8,   2,   0,    0,    0,    0,    0, 0, 0};
  put_be32(png, 16, w);
  put_be32(png, 20, h);
  // CRC-32 of "IHDR" + data (bitwise, so the test needs no zlib).
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 12; i < 29; ++i) {
    crc ^= png[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
  }
  put_be32(png, 29, ~crc);
  const uint8_t idat[] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};
  png.insert(png.end(), std::begin(idat), std::end(idat));
  return png;
}

std::vector<uint8_t> jpeg_header_claiming(uint16_t w, uint16_t h) {
  // A real small JPEG with the frame header's (SOF) dimensions rewritten.
  std::vector<uint8_t> jpeg = read_bytes(fixture("jpeg_420_q90.jpg"));
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && (jpeg[i + 1] == 0xC0 || jpeg[i + 1] == 0xC2)) {
      jpeg[i + 5] = h >> 8;
      jpeg[i + 6] = h & 0xFF;
      jpeg[i + 7] = w >> 8;
      jpeg[i + 8] = w & 0xFF;
      return jpeg;
    }
  }
  ADD_FAILURE() << "no SOF marker";
  return jpeg;
}

TEST(DecodeLimits, HundredMegapixelPngIsRefusedBeforeAllocating) {
  try {
    decode_image(png_header_claiming(10000, 10000));
    FAIL() << "decoded a bomb";
  } catch (const ImageError& e) {
    EXPECT_EQ(e.kind(), ImageErrorKind::kTooLarge) << e.what();
    EXPECT_NE(std::string(e.what()).find("10000x10000"), std::string::npos) << e.what();
  }
}

TEST(DecodeLimits, HundredMegapixelJpegIsRefusedBeforeAllocating) {
  EXPECT_EQ(kind_of_error(jpeg_header_claiming(10000, 10000)), ImageErrorKind::kTooLarge);
}

TEST(DecodeLimits, HugeBmpGifWebpHeadersAreRefused) {
  std::vector<uint8_t> bmp = read_bytes(fixture("bmp_rgb24.bmp"));
  bmp[18] = 0x10;
  bmp[19] = 0x27;
  bmp[20] = 0;
  bmp[21] = 0;  // width 10000
  bmp[22] = 0x10;
  bmp[23] = 0x27;
  bmp[24] = 0;
  bmp[25] = 0;  // height 10000
  EXPECT_EQ(kind_of_error(bmp), ImageErrorKind::kTooLarge);

  std::vector<uint8_t> gif = read_bytes(fixture("gif_p.gif"));
  gif[6] = 0x10;
  gif[7] = 0x27;
  gif[8] = 0x10;
  gif[9] = 0x27;  // logical screen 10000 x 10000
  EXPECT_EQ(kind_of_error(gif), ImageErrorKind::kTooLarge);

  std::vector<uint8_t> webp = read_bytes(fixture("webp_animated.webp"));
  // VP8X canvas size: 24-bit width-1 and height-1 at offsets 24 and 27.
  ASSERT_EQ(std::memcmp(webp.data() + 12, "VP8X", 4), 0);
  for (int at : {24, 27}) {
    webp[at] = 0x0F;
    webp[at + 1] = 0x27;
    webp[at + 2] = 0;
  }
  EXPECT_EQ(kind_of_error(webp), ImageErrorKind::kTooLarge);
}

TEST(DecodeLimits, LimitsAreConfigurable) {
  std::vector<uint8_t> png = read_bytes(fixture("png_rgb.png"));  // 45 x 30
  DecodeLimits small;
  small.max_pixels = 45 * 30 - 1;
  EXPECT_EQ(kind_of_error(png, small), ImageErrorKind::kTooLarge);
  small.max_pixels = 45 * 30;
  EXPECT_NO_THROW(decode_image(png, small));
  DecodeLimits few_bytes;
  few_bytes.max_file_bytes = png.size() - 1;
  EXPECT_EQ(kind_of_error(png, few_bytes), ImageErrorKind::kTooLarge);
}

TEST(Decode, ZeroByteAndNonImageInputs) {
  EXPECT_EQ(kind_of_error({}), ImageErrorKind::kEmpty);
  EXPECT_EQ(kind_of_error({'%', 'P', 'D', 'F', '-', '1'}), ImageErrorKind::kUnsupportedFormat);
  EXPECT_EQ(kind_of_error({0xFF, 0xD8, 0xFF}), ImageErrorKind::kTruncated);
}

}  // namespace
}  // namespace celeriac::image
