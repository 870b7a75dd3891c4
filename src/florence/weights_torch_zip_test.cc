// pytorch_model.bin reading: zip directory, restricted unpickler, shared storages, refusals.
#include "florence/weights_torch_zip.h"

#include <gtest/gtest.h>

#include <cstring>

#include "florence/weights_pickle.h"
#include "florence/weights_safetensors.h"
#include "florence/weights_test_util.h"

namespace celeriac::florence {
namespace {

using testing::tiny;

std::vector<float> floats(const TensorView& v) {
  std::vector<float> out(static_cast<std::size_t>(v.numel()));
  convert_to_f32(v, out);
  return out;
}

TEST(TorchZip, ReadsMicrosoftLayoutWithTiedNamesOnOneStorage) {
  const auto set = read_torch_zip(tiny("remote-bin-fp16") / "pytorch_model.bin");
  EXPECT_EQ(set.format, "pytorch");
  const auto& shared = set.tensors.at("language_model.model.shared.weight");
  EXPECT_EQ(shared.dtype, DType::kF16);
  EXPECT_EQ(shared.shape, (std::vector<int64_t>{51289, 12}));
  for (const char* tied :
       {"language_model.model.encoder.embed_tokens.weight",
        "language_model.model.decoder.embed_tokens.weight", "language_model.lm_head.weight"}) {
    EXPECT_EQ(set.tensors.at(tied).data, shared.data) << tied;  // one storage, zero copy
  }
  EXPECT_EQ(set.tensors.at("language_model.final_logits_bias").shape,
            (std::vector<int64_t>{1, 51289}));
  EXPECT_EQ(set.tensors.at("vision_tower.convs.0.proj.weight").shape,
            (std::vector<int64_t>{16, 3, 7, 7}));
  const auto& f = *set.files.at(0);
  for (const auto& [name, v] : set.tensors) {
    EXPECT_GE(v.data, f.data()) << name;
    EXPECT_LE(v.data + v.nbytes, f.data() + f.size()) << name;
  }
}

TEST(TorchZip, NativeBf16ValuesEqualTheFp32Safetensors) {
  const auto bin = read_torch_zip(tiny("native-bin-bf16") / "pytorch_model.bin");
  const auto st = read_safetensors(tiny("native-safetensors-fp32") / "model.safetensors");
  // torch.save of the module's state_dict keeps all four tied names; safetensors keeps one.
  EXPECT_EQ(bin.tensors.size(), st.tensors.size() + 3);
  EXPECT_EQ(bin.tensors.at("lm_head.weight").data,
            bin.tensors.at("model.language_model.shared.weight").data);
  for (const auto& [name, v] : st.tensors) {
    ASSERT_TRUE(bin.tensors.count(name)) << name;
    const auto& b = bin.tensors.at(name);
    EXPECT_EQ(b.dtype, DType::kBF16) << name;
    ASSERT_EQ(b.shape, v.shape) << name;
    EXPECT_EQ(floats(b), floats(v)) << name;  // fixture weights are exact in bf16
  }
}

TEST(TorchZip, TruncatedArchiveIsAFormatError) {
  testing::TempDir tmp;
  const auto bytes = testing::read_file(tiny("remote-bin-fp16") / "pytorch_model.bin");
  testing::write_file(tmp / "cut.bin", bytes.substr(0, bytes.size() - 5000));
  try {
    read_torch_zip(tmp / "cut.bin");
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.kind(), WeightsError::Kind::kFormat) << e.what();
  }
  testing::write_file(tmp / "text.bin", "this is not a checkpoint");
  EXPECT_THROW(read_torch_zip(tmp / "text.bin"), WeightsError);
}

TEST(TorchZip, CompressedEntryIsRefused) {
  testing::TempDir tmp;
  auto bytes = testing::read_file(tiny("remote-bin-fp16") / "pytorch_model.bin");
  // Mark data.pkl as deflated in the central directory.
  const std::string name = "pytorch_model/data.pkl";
  std::size_t pos = 0;
  bool patched = false;
  while ((pos = bytes.find("PK\x01\x02", pos)) != std::string::npos) {
    if (bytes.compare(pos + 46, name.size(), name) == 0) {
      bytes[pos + 10] = 8;
      patched = true;
      break;
    }
    pos += 4;
  }
  ASSERT_TRUE(patched);
  testing::write_file(tmp / "deflated.bin", bytes);
  try {
    read_torch_zip(tmp / "deflated.bin");
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.kind(), WeightsError::Kind::kUnsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("compressed"), std::string::npos) << e.what();
  }
}

TEST(TorchZip, LegacyFormatIsRefusedWithAHint) {
  testing::TempDir tmp;
  testing::write_file(tmp / "old.bin", std::string("\x80\x02\x8a\x0a", 4) + "legacy magic");
  try {
    read_torch_zip(tmp / "old.bin");
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.kind(), WeightsError::Kind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("legacy"), std::string::npos) << e.what();
  }
}

// Damaged archives (cut anywhere, bytes flipped in the pickle or the zip directory) end in a
// WeightsError or in a consistent read; never a crash (run under ASan in the sanitizer build).
TEST(TorchZip, DamagedArchivesNeverCrash) {
  testing::TempDir tmp;
  const auto good = testing::read_file(tiny("remote-bin-fp16") / "pytorch_model.bin");
  uint32_t state = 12345;
  auto next = [&] { return state = state * 1103515245u + 12345u; };
  int errors = 0, reads = 0;
  for (int i = 0; i < 300; ++i) {
    std::string bytes = good;
    if (i < 60) {
      bytes.resize(next() % bytes.size());
    } else {
      const bool in_pickle = i % 2 == 0;
      const std::size_t lo = in_pickle ? 0 : bytes.size() - 30000;
      const std::size_t span = in_pickle ? 38000 : 30000;
      for (int k = 0; k < 1 + i % 4; ++k) {
        bytes[lo + next() % span] = static_cast<char>(next() & 0xff);
      }
    }
    testing::write_file(tmp / "damaged.bin", bytes);
    try {
      const auto set = read_torch_zip(tmp / "damaged.bin");
      for (const auto& [name, v] : set.tensors) {
        ASSERT_EQ(v.nbytes, v.numel() * dtype_size(v.dtype)) << name;
      }
      ++reads;
    } catch (const WeightsError&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 60);
  EXPECT_EQ(errors + reads, 300);
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST(Unpickler, RefusesGlobalsOutsideTheStateDictVocabulary) {
  // pickle.dumps(os.system) with protocol 2, and a REDUCE of builtins.eval.
  const std::string os_system(
      "\x80\x02"
      "cos\nsystem\nq\x00.",
      16);
  try {
    pickle::unpickle(as_bytes(os_system), pickle::torch_storage_from_persistent_id);
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.kind(), WeightsError::Kind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("os.system"), std::string::npos) << e.what();
  }
  const std::string eval(
      "\x80\x02"
      "cbuiltins\neval\nX\x04\x00\x00\x00"
      "1+1\x85R.",
      28);
  EXPECT_THROW(pickle::unpickle(as_bytes(eval), pickle::torch_storage_from_persistent_id),
               WeightsError);
}

TEST(Unpickler, ReadsPlainValuesAndMemo) {
  // {'a': (1, -2, 300, 70000), 'b': [True, None, 'x'], 'c': <memo of 'a' value>}
  const std::string p(
      "\x80\x02}q\x00(X\x01\x00\x00\x00"
      "aq\x01(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00tq\x02"
      "X\x01\x00\x00\x00"
      "b]q\x03(\x88NX\x01\x00\x00\x00xeX\x01\x00\x00\x00"
      "ch\x02u.",
      62);
  const auto v = pickle::unpickle(as_bytes(p), pickle::torch_storage_from_persistent_id);
  ASSERT_EQ(v->type, pickle::Value::Type::kDict);
  ASSERT_EQ(v->entries.size(), 3u);
  const auto& a = v->entries[0].second;
  ASSERT_EQ(a->items.size(), 4u);
  EXPECT_EQ(a->items[1]->integer, -2);
  EXPECT_EQ(a->items[2]->integer, 300);
  EXPECT_EQ(a->items[3]->integer, 70000);
  EXPECT_EQ(v->entries[1].second->items[2]->text, "x");
  EXPECT_EQ(v->entries[2].second, a);  // BINGET returns the memoised object
}

TEST(Unpickler, TruncatedPickleIsAFormatError) {
  const std::string p(
      "\x80\x02}q\x00(X\x10\x00\x00\x00"
      "abc",
      14);
  try {
    pickle::unpickle(as_bytes(p), pickle::torch_storage_from_persistent_id);
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.kind(), WeightsError::Kind::kFormat);
  }
}

}  // namespace
}  // namespace celeriac::florence
