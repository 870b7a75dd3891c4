// The search against transformers' own generate(): scripts/fixtures/make_search_goldens.py ran
// greedy and beam search on a toy encoder-decoder whose logits are a fixed function of the
// prompt, the position and the last two tokens; ToySession below is the same function, so every
// sequence must come out identical and every beam score within 1e-5.
#include "florence/generate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

namespace celeriac::florence {
namespace {

using nlohmann::json;

const std::filesystem::path kSearchData = std::filesystem::path(CELERIAC_TEST_DATA) / "search";
const std::filesystem::path kTinyData = std::filesystem::path(CELERIAC_TEST_DATA) / "florence-tiny";

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return json::parse(in);
}

// The toy model's tables (tables.bin, float32 in the order cases.json lists them).
struct ToyTables {
  int vocab = 0, positions = 0;
  std::vector<float> prompt, position, last, second;

  // prefix "" for the main set, "ties_" for the quarter-integer set.
  static ToyTables load(const std::string& prefix = "") {
    const json doc = read_json(kSearchData / (prefix + "cases.json"));
    ToyTables t;
    t.vocab = doc.at("vocab");
    t.positions = doc.at("positions");
    std::ifstream in(kSearchData / (prefix + "tables.bin"), std::ios::binary);
    for (const json& table : doc.at("tables")) {
      size_t count = 1;
      for (const json& d : table.at("shape")) count *= d.get<size_t>();
      std::vector<float> data(count);
      in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(count * 4));
      const std::string name = table.at("name");
      (name == "prompt"     ? t.prompt
       : name == "position" ? t.position
       : name == "last"     ? t.last
                            : t.second) = std::move(data);
    }
    if (!in) throw std::runtime_error("tables.bin is shorter than cases.json says");
    return t;
  }
};

// logits = ((prompt[p] + position[t % P]) + last[s[t]]) + second[s[t-1]], float32 in that order.
class ToySession : public DecoderSession {
 public:
  ToySession(const ToyTables& tables, const std::vector<int>& prompts, int beams)
      : t_(tables), logits_(prompts.size() * beams * tables.vocab) {
    for (int p : prompts) {
      for (int k = 0; k < beams; ++k) prompt_of_row_.push_back(p);
    }
    history_.resize(prompt_of_row_.size());
  }

  int rows() const override { return static_cast<int>(history_.size()); }
  int vocab_size() const override { return t_.vocab; }
  int steps() const { return steps_; }

  const float* step(const std::vector<int32_t>& tokens) override {
    EXPECT_EQ(tokens.size(), history_.size());
    ++steps_;
    const int v = t_.vocab;
    for (size_t r = 0; r < history_.size(); ++r) {
      std::vector<int32_t>& h = history_[r];
      h.push_back(tokens[r]);
      const size_t t = h.size() - 1;
      const int last = h[t];
      const int second = t >= 1 ? h[t - 1] : v;
      const float* a = &t_.prompt[prompt_of_row_[r] * v];
      const float* b = &t_.position[(t % t_.positions) * v];
      const float* c = &t_.last[last * v];
      const float* d = &t_.second[second * v];
      float* out = &logits_[r * v];
      for (int i = 0; i < v; ++i) out[i] = ((a[i] + b[i]) + c[i]) + d[i];
    }
    return logits_.data();
  }

  void reorder(const std::vector<int>& parents) override {
    ASSERT_EQ(parents.size(), history_.size());
    std::vector<std::vector<int32_t>> moved;
    for (int p : parents) moved.push_back(history_.at(p));
    history_ = std::move(moved);
  }

 private:
  const ToyTables& t_;
  std::vector<int> prompt_of_row_;
  std::vector<std::vector<int32_t>> history_;
  std::vector<float> logits_;
  int steps_ = 0;
};

struct SetSummary {
  int cases = 0, beam_cases = 0, sequences = 0;
  std::set<size_t> lengths;
};

// Runs every case of one golden set through generate() on the toy session.
SetSummary check_golden_set(const std::string& prefix) {
  const ToyTables tables = ToyTables::load(prefix);
  const json doc = read_json(kSearchData / (prefix + "cases.json"));
  SetSummary summary;
  for (const json& c : doc.at("cases")) {
    SCOPED_TRACE(c.at("name").get<std::string>() + " " + c.at("config").dump());
    const GenerationConfig config = GenerationConfig::from_json(c.at("config"));
    const std::vector<int> prompts = c.at("prompts");
    ToySession session(tables, prompts, config.num_beams);
    const GenerationResult out = generate(session, config);
    const auto expected = c.at("expected").at("sequences").get<std::vector<std::vector<int32_t>>>();
    EXPECT_EQ(out.sequences, expected);
    EXPECT_LE(session.steps(), config.resolved_max_length() - 1);
    EXPECT_EQ(out.lengths.size(), prompts.size());
    for (size_t b = 0; b < out.lengths.size() && b < expected.size(); ++b) {
      EXPECT_LE(out.lengths[b] + 1, static_cast<int>(expected[b].size()));
      summary.lengths.insert(expected[b].size());
    }
    if (config.num_beams > 1) {
      ++summary.beam_cases;
      const auto scores = c.at("expected").at("sequences_scores").get<std::vector<float>>();
      EXPECT_EQ(out.scores.size(), scores.size());
      // 1e-5, relative beyond magnitude 1: a negative length penalty multiplies the sum by the
      // length, and one float32 ulp at -525 is already 6e-5.
      for (size_t b = 0; b < scores.size() && b < out.scores.size(); ++b) {
        EXPECT_NEAR(out.scores[b], scores[b], 1e-5 * std::max(1.0f, std::abs(scores[b])));
      }
    } else {
      EXPECT_TRUE(out.scores.empty());
    }
    ++summary.cases;
    summary.sequences += static_cast<int>(prompts.size());
  }
  return summary;
}

TEST(Generate, ReproducesTransformersOnTheToyModel) {
  const SetSummary s = check_golden_set("");
  EXPECT_GE(s.cases, 100);
  EXPECT_GE(s.beam_cases, 81);
  EXPECT_GE(s.sequences, 150);
  EXPECT_GE(s.lengths.size(), 10u);  // the goldens cover many output lengths
}

// Quarter-integer logits: equal scores are everywhere, and the order among them must be
// torch.topk's (both of its CPU algorithms are reached: 160 tokens x 2..4 beams).
TEST(Generate, BreaksScoreTiesAsTorchDoes) {
  const SetSummary s = check_golden_set("ties_");
  EXPECT_GE(s.cases, 40);
  EXPECT_GE(s.beam_cases, 30);
}

TEST(GenerationConfig, ReadsEveryField) {
  const GenerationConfig c = GenerationConfig::from_json(json::parse(R"({
      "num_beams": 4, "max_new_tokens": 7, "max_length": 30, "min_length": 3,
      "min_new_tokens": 2, "early_stopping": "never", "no_repeat_ngram_size": 2,
      "length_penalty": 0.5, "decoder_start_token_id": 5, "bos_token_id": 0,
      "eos_token_id": [2, 7], "pad_token_id": 1, "forced_bos_token_id": 0,
      "forced_eos_token_id": 2, "do_sample": false, "repetition_penalty": 1.0,
      "transformers_version": "5.23.0"})"));
  EXPECT_EQ(c.num_beams, 4);
  EXPECT_EQ(c.resolved_max_length(), 8);  // max_new_tokens wins over max_length
  EXPECT_EQ(c.resolved_min_length(), 3);  // min_new_tokens wins over min_length
  EXPECT_EQ(c.early_stopping, EarlyStopping::kNever);
  EXPECT_EQ(c.no_repeat_ngram_size, 2);
  EXPECT_DOUBLE_EQ(c.length_penalty, 0.5);
  EXPECT_EQ(c.resolved_decoder_start(), 5);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 7}));
  EXPECT_EQ(c.forced_eos_token_ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(c.forced_bos_token_id, 0);

  const GenerationConfig d = GenerationConfig::from_json(json::parse(R"({"bos_token_id": 3})"));
  EXPECT_EQ(d.num_beams, 1);
  EXPECT_EQ(d.resolved_max_length(), 21);  // transformers' default of 20 new tokens
  EXPECT_EQ(d.resolved_decoder_start(), 3);
  EXPECT_EQ(d.early_stopping, EarlyStopping::kFalse);
}

TEST(GenerationConfig, RefusesWhatItCannotReproduce) {
  for (const char* text : {R"({"do_sample": true})", R"({"num_return_sequences": 2})",
                           R"({"repetition_penalty": 1.2})", R"({"bad_words_ids": [[5]]})",
                           R"({"early_stopping": "sometimes"})", R"({"num_beams": 0})",
                           R"({"max_new_tokens": "ten"})", R"({"suppress_tokens": [3]})",
                           R"({"exponential_decay_length_penalty": [5, 1.5]})", R"([1, 2])"}) {
    SCOPED_TRACE(text);
    EXPECT_THROW(GenerationConfig::from_json(json::parse(text)), GenerationConfigError);
  }
  EXPECT_THROW(GenerationConfig().resolved_decoder_start(), GenerationConfigError);
}

TEST(GenerationConfig, CommandLineOverrides) {
  GenerationConfig c;
  c.set("num_beams", "3");
  c.set("early_stopping", "never");
  c.set("length_penalty", "-0.5");
  c.set("eos_token_id", "2,7");
  c.set("max_new_tokens", "1024");
  c.set("forced_bos_token_id", "0");
  c.set("forced_bos_token_id", "none");
  EXPECT_EQ(c.num_beams, 3);
  EXPECT_EQ(c.early_stopping, EarlyStopping::kNever);
  EXPECT_DOUBLE_EQ(c.length_penalty, -0.5);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 7}));
  EXPECT_EQ(c.resolved_max_length(), 1025);
  EXPECT_FALSE(c.forced_bos_token_id.has_value());
  EXPECT_THROW(c.set("num_beams", "0"), GenerationConfigError);
  EXPECT_THROW(c.set("num_beams", "3x"), GenerationConfigError);
  EXPECT_THROW(c.set("pad_token_id", "1,2"), GenerationConfigError);
  EXPECT_THROW(c.set("temperature", "0.7"), GenerationConfigError);
  EXPECT_THROW(c.set("early_stopping", "yes"), GenerationConfigError);
  EXPECT_EQ(c.num_beams, 3);  // a refused value leaves the field as it was
}

// Both checkpoint layouts give Florence-2's search settings (florence2.md section 13.1): native
// folders from generation_config.json, remote-code ones from config.json's text_config.
TEST(GenerationConfig, ReadsFlorenceCheckpointFolders) {
  for (const char* folder : {"native-safetensors-fp32", "remote-sharded-bf16"}) {
    SCOPED_TRACE(folder);
    const GenerationConfig c = GenerationConfig::from_model_dir(kTinyData / folder);
    EXPECT_EQ(c.num_beams, 3);
    EXPECT_EQ(c.no_repeat_ngram_size, 3);
    EXPECT_EQ(c.early_stopping, EarlyStopping::kTrue);
    EXPECT_DOUBLE_EQ(c.length_penalty, 1.0);
    EXPECT_EQ(c.resolved_decoder_start(), 2);
    EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2}));
    EXPECT_EQ(c.pad_token_id, 1);
    EXPECT_EQ(c.forced_bos_token_id, 0);
    EXPECT_EQ(c.forced_eos_token_ids, (std::vector<int32_t>{2}));
  }
}

TEST(Generate, RefusesASessionThatDoesNotFitTheBeams) {
  const ToyTables tables = ToyTables::load();
  ToySession session(tables, {0, 1}, 1);  // 2 rows
  GenerationConfig c;
  c.num_beams = 3;
  c.decoder_start_token_id = 2;
  EXPECT_THROW(generate(session, c), GenerationConfigError);
  EXPECT_EQ(session.steps(), 0);
}

}  // namespace
}  // namespace celeriac::florence
