// Zip central directory walk and state_dict extraction for torch.save archives.
#include "florence/weights_torch_zip.h"

#include <cstring>

#include "florence/weights_pickle.h"

namespace celeriac::florence {
namespace {

using Kind = WeightsError::Kind;

uint64_t rd(const std::byte* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

[[noreturn]] void bad_zip(const MappedFile& f, const std::string& why) {
  throw WeightsError(Kind::kFormat, f.path().string() + ": " + why);
}

}  // namespace

std::map<std::string, ZipMember> read_zip_directory(const MappedFile& file) {
  const std::byte* base = file.data();
  const uint64_t size = file.size();
  auto need = [&](uint64_t off, uint64_t len, const char* what) {
    if (off > size || len > size - off) bad_zip(file, std::string("truncated zip (") + what + ")");
  };
  // End of central directory: 22 bytes + a comment of up to 64 KiB, at the end of the file.
  if (size < 22) bad_zip(file, "too short for a zip archive");
  int64_t eocd = -1;
  const uint64_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  for (uint64_t off = size - 22 + 1; off-- > lowest;) {
    if (rd(base + off, 4) == 0x06054b50) {
      eocd = static_cast<int64_t>(off);
      break;
    }
  }
  if (eocd < 0) bad_zip(file, "no zip end-of-central-directory record (truncated or not a zip)");
  uint64_t count = rd(base + eocd + 10, 2);
  uint64_t cd_size = rd(base + eocd + 12, 4);
  uint64_t cd_offset = rd(base + eocd + 16, 4);
  if (count == 0xffff || cd_size == 0xffffffff || cd_offset == 0xffffffff) {
    // zip64: a locator right before the EOCD points at the zip64 EOCD record.
    if (eocd < 20 || rd(base + eocd - 20, 4) != 0x07064b50) bad_zip(file, "zip64 locator missing");
    const uint64_t z64 = rd(base + eocd - 20 + 8, 8);
    need(z64, 56, "zip64 end of central directory");
    if (rd(base + z64, 4) != 0x06064b50) bad_zip(file, "bad zip64 end-of-central-directory");
    count = rd(base + z64 + 32, 8);
    cd_size = rd(base + z64 + 40, 8);
    cd_offset = rd(base + z64 + 48, 8);
  }
  need(cd_offset, cd_size, "central directory");
  std::map<std::string, ZipMember> members;
  uint64_t p = cd_offset;
  for (uint64_t i = 0; i < count; ++i) {
    need(p, 46, "central directory entry");
    if (rd(base + p, 4) != 0x02014b50) bad_zip(file, "bad central directory entry");
    const uint16_t method = static_cast<uint16_t>(rd(base + p + 10, 2));
    uint64_t csize = rd(base + p + 20, 4);
    uint64_t usize = rd(base + p + 24, 4);
    const uint64_t name_len = rd(base + p + 28, 2);
    const uint64_t extra_len = rd(base + p + 30, 2);
    const uint64_t comment_len = rd(base + p + 32, 2);
    uint64_t local = rd(base + p + 42, 4);
    need(p + 46, name_len + extra_len + comment_len, "central directory entry");
    std::string name(reinterpret_cast<const char*>(base + p + 46), name_len);
    // zip64 extended information: 8-byte values for the fields saturated above, in this order.
    const std::byte* extra = base + p + 46 + name_len;
    for (uint64_t e = 0; e + 4 <= extra_len;) {
      const uint64_t id = rd(extra + e, 2), len = rd(extra + e + 2, 2);
      if (e + 4 + len > extra_len) break;
      if (id == 0x0001) {
        uint64_t q = e + 4;
        auto next = [&](uint64_t& field) {
          if (field == 0xffffffff && q + 8 <= e + 4 + len) {
            field = rd(extra + q, 8);
            q += 8;
          }
        };
        next(usize);
        next(csize);
        next(local);
      }
      e += 4 + len;
    }
    need(local, 30, "local file header");
    if (rd(base + local, 4) != 0x04034b50) bad_zip(file, "bad local header for " + name);
    const uint64_t data = local + 30 + rd(base + local + 26, 2) + rd(base + local + 28, 2);
    need(data, csize, name.c_str());
    if (method == 0 && csize != usize) bad_zip(file, "stored entry " + name + " changes size");
    members[name] = ZipMember{data, csize, method};
    p += 46 + name_len + extra_len + comment_len;
  }
  return members;
}

TensorSet read_torch_zip(const std::filesystem::path& path, const MapOptions& options) {
  auto file = MappedFile::open(path, options);
  const std::string where = path.string();
  if (file->size() >= 2 && static_cast<uint8_t>(file->data()[0]) == 0x80) {
    throw WeightsError(Kind::kUnsupported,
                       where +
                           ": legacy PyTorch format (torch < 1.6, not a zip archive); "
                           "re-save it with a current torch or convert it to safetensors");
  }
  if (file->size() < 4 || rd(file->data(), 4) != 0x04034b50) {
    throw WeightsError(Kind::kFormat, where + ": not a PyTorch zip archive");
  }
  const auto members = read_zip_directory(*file);
  // The archive's top folder is whatever name torch.save was given ("archive", "pytorch_model").
  std::string prefix;
  for (const auto& [name, m] : members) {
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "data.pkl") == 0 &&
        name.find('/') == name.size() - 9) {
      prefix = name.substr(0, name.size() - 8);
      break;
    }
  }
  if (prefix.empty()) throw WeightsError(Kind::kFormat, where + ": no <name>/data.pkl entry");
  auto member_bytes = [&](const std::string& name) -> std::span<const std::byte> {
    const auto& m = members.at(name);
    if (m.method != 0) {
      throw WeightsError(Kind::kUnsupported, where + ": entry " + name + " is compressed (method " +
                                                 std::to_string(m.method) +
                                                 "); torch.save stores entries as is");
    }
    return {file->data() + m.data_offset, m.size};
  };
  if (auto it = members.find(prefix + "byteorder"); it != members.end()) {
    auto b = member_bytes(prefix + "byteorder");
    if (std::string(reinterpret_cast<const char*>(b.data()), b.size()) != "little") {
      throw WeightsError(Kind::kUnsupported, where + ": big-endian archive");
    }
  }

  const auto root =
      pickle::unpickle(member_bytes(prefix + "data.pkl"), pickle::torch_storage_from_persistent_id);
  if (root->type != pickle::Value::Type::kDict) {
    throw WeightsError(Kind::kFormat, where + ": data.pkl does not hold a dict (a state_dict)");
  }
  TensorSet set;
  set.format = "pytorch";
  for (const auto& [key, value] : root->entries) {
    if (key->type != pickle::Value::Type::kString || value->type != pickle::Value::Type::kTensor) {
      continue;  // e.g. a nested dict of non-tensor metadata
    }
    const std::string& name = key->text;
    const pickle::TensorRef& t = value->tensor;
    auto bad = [&](const std::string& why) {
      return WeightsError(Kind::kFormat, where + ": tensor " + name + ": " + why, name);
    };
    const std::string member = prefix + "data/" + t.storage_key;
    if (!members.count(member)) throw bad("storage " + member + " missing from the archive");
    const auto storage = member_bytes(member);
    const std::size_t esize = dtype_size(t.dtype);
    if (static_cast<uint64_t>(t.storage_numel) * esize > storage.size()) {
      throw bad("storage " + t.storage_key + " holds " + std::to_string(storage.size()) +
                " bytes, fewer than its " + std::to_string(t.storage_numel) + " elements");
    }
    // Row-major strides are required: the model reads tensors as dense arrays.
    int64_t expect = 1, numel = 1;
    for (std::size_t d = t.shape.size(); d-- > 0;) {
      if (t.shape[d] < 0) throw bad("negative dimension");
      if (t.shape[d] != 1 && t.stride[d] != expect) {
        throw bad("is not contiguous (stride " + shape_to_string(t.stride) + " for size " +
                  shape_to_string(t.shape) + "); save it with .contiguous()");
      }
      expect *= t.shape[d];
      numel *= t.shape[d];
    }
    if (t.storage_offset < 0 || t.storage_offset + numel > t.storage_numel) {
      throw bad("reaches past its storage");
    }
    TensorView view;
    view.dtype = t.dtype;
    view.shape = t.shape;
    view.data = storage.data() + t.storage_offset * esize;
    view.nbytes = static_cast<std::size_t>(numel) * esize;
    set.origin[name] = path;
    set.tensors.insert_or_assign(name, std::move(view));
  }
  set.files.push_back(std::move(file));
  return set;
}

}  // namespace celeriac::florence
