// Test helpers for the florence weights tests.
#include "florence/weights_test_util.h"

#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>

namespace celeriac::florence::testing {

std::filesystem::path tiny_dir() {
  return std::filesystem::path(CELERIAC_TEST_DATA) / "florence-tiny";
}
std::filesystem::path tiny(const std::string& folder) { return tiny_dir() / folder; }

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("celeriac-weights-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void write_safetensors(const std::filesystem::path& path,
                       const std::map<std::string, TensorView>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, view] : tensors) {
    const std::size_t begin = data.size();
    data.append(reinterpret_cast<const char*>(view.data), view.nbytes);
    header[name] = {{"dtype", std::string(dtype_name(view.dtype))},
                    {"shape", view.shape},
                    {"data_offsets", {begin, data.size()}}};
  }
  std::string h = header.dump();
  while (h.size() % 8) h.push_back(' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  write_file(path, out + h + data);
}

}  // namespace celeriac::florence::testing
