// Local files are written beside their final name and renamed into place, so a worker never
// reads a half-written image and two gateways storing the same bytes at once both succeed.
#include "app/upload_store.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "image/decode.h"
#include "storage/gcs.h"

namespace celeriac::app {

namespace fs = std::filesystem;

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("sha256 failed");
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

namespace {

struct Format {
  const char* name;
  const char* extension;
  const char* media_type;
};

Format format_of(std::string_view bytes) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  switch (image::sniff_format({data, bytes.size()})) {
    case image::ImageFormat::kJpeg:
      return {"jpeg", ".jpg", "image/jpeg"};
    case image::ImageFormat::kPng:
      return {"png", ".png", "image/png"};
    case image::ImageFormat::kWebp:
      return {"webp", ".webp", "image/webp"};
    case image::ImageFormat::kBmp:
      return {"bmp", ".bmp", "image/bmp"};
    case image::ImageFormat::kGif:
      return {"gif", ".gif", "image/gif"};
    case image::ImageFormat::kUnknown:
      break;
  }
  throw NotAnImage("the upload is not a JPEG, PNG, WebP, BMP or GIF image");
}

bool is_gcs(const std::string& base) { return base.rfind("gs://", 0) == 0; }

}  // namespace

UploadStore::UploadStore(std::string base, storage::FetchOptions gcs)
    : base_(std::move(base)), gcs_(std::move(gcs)) {
  if (base_.empty()) throw std::invalid_argument("uploads: no folder or gs:// base given");
  if (is_gcs(base_)) {
    if (base_.size() <= 5 || base_[5] == '/')
      throw std::invalid_argument("uploads: expected gs://BUCKET[/PREFIX], got " + base_);
    while (base_.back() == '/') base_.pop_back();
    return;
  }
  std::error_code ec;
  fs::create_directories(base_, ec);
  if (!fs::is_directory(base_))
    throw std::invalid_argument("uploads: " + base_ + " is not a folder that can be created");
  base_ = fs::absolute(base_).lexically_normal().string();
  while (base_.size() > 1 && base_.back() == '/') base_.pop_back();
}

StoredImage UploadStore::put(std::string_view bytes) {
  const Format format = format_of(bytes);
  StoredImage out{"", sha256_hex(bytes), format.name, bytes.size(), false};
  const std::string name = out.sha256 + format.extension;
  out.url = base_ + "/" + name;
  if (is_gcs(base_)) {
    storage::put_gcs(out.url, std::string(bytes), format.media_type, gcs_);
    out.created = true;  // the JSON API does not say whether it replaced an object
    return out;
  }
  std::error_code ec;
  if (fs::file_size(out.url, ec) == bytes.size() && !ec) return out;  // same name: same bytes
  static std::atomic<unsigned> counter{0};
  const std::string temp = base_ + "/." + name + "." + std::to_string(getpid()) + "." +
                           std::to_string(counter++) + ".tmp";
  {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    file.close();
    if (!file) {
      fs::remove(temp, ec);
      throw std::runtime_error("uploads: writing " + temp + " failed");
    }
  }
  fs::rename(temp, out.url, ec);
  if (ec) {
    fs::remove(temp, ec);
    throw std::runtime_error("uploads: storing " + out.url + " failed: " + ec.message());
  }
  out.created = true;
  return out;
}

}  // namespace celeriac::app
