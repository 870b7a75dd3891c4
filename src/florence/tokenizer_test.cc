// Tokenizer vs the goldens of scripts/fixtures/make_text_goldens.py (HF tokenizers/transformers),
// on both file layouts: tokenizer.json with the Florence tokens already present, and
// vocab.json + merges.txt with the tokens added at runtime.
#include "florence/tokenizer.h"

#include <gtest/gtest.h>

#include "florence/text_test_util.h"
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace celeriac::florence {
namespace {

const std::filesystem::path& kData = testing::kTextData;
using testing::read_jsonl;

std::string show(const std::vector<int32_t>& ids) { return nlohmann::json(ids).dump(); }

class TokenizerGoldens : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerGoldens, EncodeAndDecodeMatchReference) {
  Tokenizer tok = Tokenizer::load_florence(kData / GetParam());
  ASSERT_EQ(tok.vocab_size(), 51289u);
  auto goldens = read_jsonl(kData / "tokenizer_goldens.jsonl");
  ASSERT_GE(goldens.size(), 2000u);
  int encode_failures = 0, decode_failures = 0, encoded = 0;
  for (const auto& g : goldens) {
    std::vector<int32_t> ids = g["ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> full = ids;
    if (g.contains("text")) {
      ++encoded;
      const std::string text = g["text"].get<std::string>();
      std::vector<int32_t> got = tok.encode(text, false);
      if (got != ids && ++encode_failures <= 10) {
        ADD_FAILURE() << "encode " << nlohmann::json(text).dump() << "\n  want " << show(ids)
                      << "\n  got  " << show(got);
      }
      std::vector<int32_t> with_specials = tok.encode(text, true);
      full.insert(full.begin(), 0);
      full.push_back(2);
      if (with_specials != full && ++encode_failures <= 10) {
        ADD_FAILURE() << "encode with specials " << nlohmann::json(text).dump();
      }
    }
    struct Case {
      const char* key;
      DecodeOptions options;
    };
    for (const Case& c : {Case{"decode", {false, true}}, Case{"decode_skip", {true, true}},
                          Case{"decode_raw", {false, false}}}) {
      std::string got = tok.decode(full, c.options);
      std::string want = g[c.key].get<std::string>();
      if (got != want && ++decode_failures <= 10) {
        ADD_FAILURE() << c.key << " " << show(full) << "\n  want " << nlohmann::json(want).dump()
                      << "\n  got  " << nlohmann::json(got).dump();
      }
    }
  }
  EXPECT_EQ(encode_failures, 0) << "of " << encoded << " encoded strings";
  EXPECT_EQ(decode_failures, 0) << "of " << goldens.size() << " records x 3";
  EXPECT_GE(encoded, 2000);
}

INSTANTIATE_TEST_SUITE_P(Layouts, TokenizerGoldens,
                         ::testing::Values("tokenizer-json", "tokenizer-files"));

TEST(Tokenizer, FlorenceTokenIdsAndSpecials) {
  Tokenizer tok = Tokenizer::load_florence(kData / "tokenizer-files");
  EXPECT_EQ(tok.token_to_id("<od>"), 50265);
  EXPECT_EQ(tok.token_to_id("<loc_0>"), 50269);
  EXPECT_EQ(tok.token_to_id("<loc_999>"), 51268);
  EXPECT_EQ(tok.token_to_id("<and>"), 51288);
  EXPECT_EQ(tok.token_to_id("<mask>"), 50264);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), 1);
  // Adding them again changes nothing (re-saved checkpoints already carry them).
  tok.add_special_tokens(florence_added_tokens());
  EXPECT_EQ(tok.vocab_size(), 51289u);
  // A new token goes after the last one.
  tok.add_special_tokens({"<new_token>"});
  EXPECT_EQ(tok.token_to_id("<new_token>"), 51289);
}

TEST(Tokenizer, WithoutFlorenceTokensLocIsPlainText) {
  Tokenizer tok = Tokenizer::load(kData / "tokenizer-files");
  EXPECT_EQ(tok.vocab_size(), 50265u);
  auto ids = tok.encode("<loc_5>", false);
  EXPECT_GT(ids.size(), 1u);
}

TEST(Tokenizer, RejectsInvalidUtf8AndMissingFiles) {
  Tokenizer tok = Tokenizer::load_florence(kData / "tokenizer-json" / "tokenizer.json");
  EXPECT_THROW(tok.encode("bad \xff byte"), TokenizerInputError);
  EXPECT_THROW(tok.encode("\xe2\x82"), TokenizerInputError);
  EXPECT_THROW(Tokenizer::load(kData / "no-such-dir"), TokenizerLoadError);
  EXPECT_THROW(Tokenizer::load(kData), TokenizerLoadError);
}

}  // namespace
}  // namespace celeriac::florence

namespace celeriac::florence {
namespace {

// The slow-tokenizer layout save_pretrained writes: vocab.json + merges.txt + added_tokens.json.
TEST(Tokenizer, AddedTokensJsonLayoutMatchesGoldens) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("celeriac-tok-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json"}) {
    fs::copy_file(kData / "tokenizer-files" / f, dir / f, fs::copy_options::overwrite_existing);
  }
  nlohmann::json added = nlohmann::json::object();
  const auto& tokens = florence_added_tokens();
  for (size_t i = 0; i < tokens.size(); ++i) added[tokens[i]] = 50265 + static_cast<int>(i);
  std::ofstream(dir / "added_tokens.json") << added.dump();
  std::ofstream(dir / "special_tokens_map.json")
      << nlohmann::json({{"bos_token", "<s>"},
                         {"eos_token", "</s>"},
                         {"pad_token", "<pad>"},
                         {"unk_token", "<unk>"},
                         {"mask_token", "<mask>"},
                         {"additional_special_tokens", tokens}})
             .dump();
  Tokenizer tok = Tokenizer::load(dir);
  fs::remove_all(dir);
  EXPECT_EQ(tok.vocab_size(), 51289u);
  int checked = 0;
  for (const auto& g : read_jsonl(kData / "tokenizer_goldens.jsonl")) {
    if (!g.contains("text")) continue;
    std::vector<int32_t> ids = g["ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(tok.encode(g["text"].get<std::string>(), false), ids) << g["text"].dump();
    std::vector<int32_t> full = ids;
    full.insert(full.begin(), 0);
    full.push_back(2);
    ASSERT_EQ(tok.decode(full, {true, true}), g["decode_skip"].get<std::string>());
    if (++checked == 500) break;
  }
}

}  // namespace
}  // namespace celeriac::florence
