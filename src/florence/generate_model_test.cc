// Florence-2 end to end on the tiny random-weight checkpoints: image -> prompt -> model ->
// greedy / beam search -> decoded text -> post-processing, against what transformers' own
// generate() and Microsoft's processor gave (tests/data/florence-tiny/reference: generations.json
// from make_florence_tiny.py, parsed.json from make_florence_parsed.py). Random weights generate
// long, repetitive sequences: the no-repeat 3-gram ban, the forced BOS and (in the 1024-token
// run) the forced EOS at the position limit all decide tokens here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "florence/generate.h"
#include "florence/model.h"
#include "florence/model_test_util.h"
#include "florence/postprocess.h"
#include "florence/tokenizer.h"
#include "image/decode.h"
#include "image/preprocess.h"
#include "nn/linear.h"
#include "nn/tensor.h"

namespace celeriac::florence {
namespace {

using nlohmann::json;

const std::filesystem::path kTiny = std::filesystem::path(CELERIAC_TEST_DATA) / "florence-tiny";

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return json::parse(in);
}

std::string task_token(const std::string& task) { return task.substr(0, task.find('>') + 1); }

// A reference set — generations, parsed results by (pair, run), the shared tokenizer (two of
// the four tiny folders carry no tokenizer files) and the decoded images — under `root`, laid
// out as make_florence_tiny.py and make_florence_base_random.py write it.
struct Reference {
  std::filesystem::path root;
  json generations;
  std::map<std::pair<std::string, std::string>, std::string> parsed;
  Tokenizer tokenizer;
  std::map<std::string, image::DecodedImage> images;

  Reference(const std::filesystem::path& dir, const std::string& tokenizer_folder)
      : root(dir),
        generations(read_json(dir / "reference" / "generations.json")),
        tokenizer(Tokenizer::load_florence(dir / tokenizer_folder)) {
    const json parsed_doc = read_json(dir / "reference" / "parsed.json");
    for (const json& r : parsed_doc.at("records")) {
      const std::string key_pair = r.at("pair"), key_run = r.at("run");
      parsed[{key_pair, key_run}] = r.value("result", "error: " + r.value("error", ""));
    }
    for (const json& pair : generations.at("pairs")) {
      const std::string name = pair.at("image");
      if (!images.count(name)) {
        images[name] = image::decode_image_file((dir / "images" / name).string());
      }
    }
  }

  static const Reference& tiny() {
    static const Reference ref(kTiny, "native-safetensors-fp32");
    return ref;
  }
};

// pixel_values [n, 3, H, W] of one image repeated n times.
std::vector<float> pixels_of(const image::DecodedImage& img, const image::PreprocessOptions& o,
                             int n, int* height, int* width) {
  const image::PreprocessedImage p = image::preprocess(img, o);
  *height = p.height;
  *width = p.width;
  std::vector<float> out;
  for (int i = 0; i < n; ++i) out.insert(out.end(), p.chw.begin(), p.chw.end());
  return out;
}

GenerationConfig config_for(const std::filesystem::path& dir, const json& kwargs) {
  GenerationConfig c = GenerationConfig::from_model_dir(dir);
  c.num_beams = kwargs.at("num_beams");
  c.max_new_tokens = kwargs.at("max_new_tokens").get<int>();
  return c;
}

// Every run of the reference from the image file on: preprocess, prompt ids, model, search,
// decode, post-process. Returns how many runs were checked.
// Runs generate() on `model` for every run of the reference and hands each result to check(pair,
// run, result).
template <typename Check>
void for_each_reference_run(const Reference& ref, const Model& model,
                            const std::filesystem::path& dir, Check check) {
  for (const json& pair : ref.generations.at("pairs")) {
    const std::string id = pair.at("pair");
    SCOPED_TRACE(id + " " + pair.at("task").get<std::string>());
    const std::vector<int32_t> prompt_ids = pair.at("prompt_ids");
    EXPECT_EQ(ref.tokenizer.encode(pair.at("prompt").get<std::string>()), prompt_ids);
    int h = 0, w = 0;
    std::vector<float> pixels = pixels_of(ref.images.at(pair.at("image").get<std::string>()),
                                          model.preprocess_options(), 1, &h, &w);
    const EncodedBatch encoded =
        model.encode(nn::Tensor::view(pixels.data(), {1, 3, h, w}), {prompt_ids});
    for (const json& run : pair.at("runs")) {
      SCOPED_TRACE(run.at("name").get<std::string>());
      const GenerationConfig config = config_for(dir, run.at("generate_kwargs"));
      auto session = model.start(encoded, config.num_beams, config.resolved_max_length() - 1);
      check(pair, run, generate(*session, config));
    }
  }
}

int check_like_the_reference(const Reference& ref, const std::filesystem::path& dir) {
  const Model model(dir);
  int runs = 0;
  for_each_reference_run(ref, model, dir, [&](const json& pair, const json& run,
                                              const GenerationResult& out) {
    EXPECT_EQ(out.sequences.size(), 1u);
    if (out.sequences.size() != 1) return;
    const auto want = run.at("token_ids").get<std::vector<int32_t>>();
    const auto& got = out.sequences[0];
    const size_t first_diff =
        std::mismatch(got.begin(), got.end(), want.begin(), want.end()).first - got.begin();
    EXPECT_EQ(got.size(), want.size());
    EXPECT_EQ(first_diff, got.size()) << "first different token at " << first_diff;
    DecodeOptions decode;
    decode.clean_up_tokenization_spaces = true;
    const std::string text = ref.tokenizer.decode(out.sequences[0], decode);
    EXPECT_TRUE(text == run.at("text").get<std::string>()) << "decoded text differs";
    const json size = pair.at("image_size");
    const std::string parsed = to_python_json(post_process_generation(
        text, task_token(pair.at("task")), ImageSize{size[0].get<int>(), size[1].get<int>()}));
    EXPECT_TRUE(parsed == ref.parsed.at({pair.at("pair").get<std::string>(),
                                         run.at("name").get<std::string>()}))
        << "parsed result differs: " << parsed.substr(0, 200);
    ++runs;
  });
  return runs;
}

// How many reference runs come out token-identical with bf16 copies of the decoder's weights
// (ModelOptions::bf16_decoder), and with bf16 encoders too, out of how many: the agreement issue
// 5 asks to report.
constexpr ModelOptions kBf16Decoder{.bf16_decoder = true};
constexpr ModelOptions kBf16All{.bf16_decoder = true, .bf16_encoders = true};
std::pair<int, int> bf16_agreement(const Reference& ref, const std::filesystem::path& dir,
                                   const ModelOptions& options = kBf16Decoder) {
  const Model model(dir, options);
  int same = 0, runs = 0;
  for_each_reference_run(ref, model, dir, [&](const json&, const json& run,
                                              const GenerationResult& out) {
    same += out.sequences.at(0) == run.at("token_ids").get<std::vector<int32_t>>();
    ++runs;
  });
  return {same, runs};
}

class TinyCheckpoint : public ::testing::TestWithParam<const char*> {};

// The fixture scripts round every weight to a value bf16 (and fp16) hold exactly, so here the bf16
// copies carry the same values and every run must stay identical: this checks that the bf16 path
// is exact and wired into every per-step product, not what rounding real fp32 weights does to
// the tokens (that needs real weights; the count is printed and recorded for them).
TEST_P(TinyCheckpoint, Bf16DecoderWeightsAgreement) {
  const auto [same, runs] = bf16_agreement(Reference::tiny(), kTiny / GetParam());
  std::printf("bf16 decoder weights, %s: %d of %d reference runs token-identical\n", GetParam(),
              same, runs);
  RecordProperty("bf16_agreement", std::to_string(same) + "/" + std::to_string(runs));
  EXPECT_EQ(runs, 47);
  EXPECT_EQ(same, runs);
}

// With the encoders in bf16 too the activations round, so tokens may differ: the count is the
// measurement (printed, recorded). It must still run every reference run, and where the CPU has
// no bf16 GEMM the encoders stay fp32 and every run stays identical.
TEST_P(TinyCheckpoint, Bf16EncodersAgreement) {
  const auto [same, runs] = bf16_agreement(Reference::tiny(), kTiny / GetParam(), kBf16All);
  std::printf("bf16 decoder weights + bf16 encoders (%s), %s: %d of %d runs token-identical\n",
              nn::bf16_gemm_supported() ? "bf16 GEMMs" : "fp32 here", GetParam(), same, runs);
  RecordProperty("bf16_encoders_agreement", std::to_string(same) + "/" + std::to_string(runs));
  EXPECT_EQ(runs, 47);
  if (!nn::bf16_gemm_supported()) {
    EXPECT_EQ(same, runs);
  }
}

TEST_P(TinyCheckpoint, GeneratesAndParsesLikeTheReference) {
  // 23 pairs x (greedy, beam3) + p00's beam3_max1024
  EXPECT_EQ(check_like_the_reference(Reference::tiny(), kTiny / GetParam()), 47);
}

// Acceptance on the full Florence-2-base configuration (random weights, generated locally and
// never committed; `make florence-base-check` makes it and runs this): both key layouts, every
// reference run greedy and with 3 beams, tokens, text and parsed results identical.
class BaseCheckpoint : public testing::BaseCheckpointTest {};

TEST_F(BaseCheckpoint, GeneratesAndParsesLikeTheReference) {
  const char* root = this->root();
  const Reference ref(root, "native");
  const int runs = 2 * static_cast<int>(ref.generations.at("pairs").size());
  for (const char* layout : {"native", "remote"}) {
    SCOPED_TRACE(layout);
    EXPECT_EQ(check_like_the_reference(ref, std::filesystem::path(root) / layout), runs);
  }
  const auto [same, total] = bf16_agreement(ref, std::filesystem::path(root) / "native");
  std::printf("bf16 decoder weights, base: %d of %d reference runs token-identical\n", same,
              total);
  const auto [same_all, total_all] =
      bf16_agreement(ref, std::filesystem::path(root) / "native", kBf16All);
  std::printf("bf16 decoder weights + bf16 encoders (%s), base: %d of %d runs token-identical\n",
              nn::bf16_gemm_supported() ? "bf16 GEMMs" : "fp32 here", same_all, total_all);
}

INSTANTIATE_TEST_SUITE_P(Florence, TinyCheckpoint, ::testing::ValuesIn(testing::kTinyFolders),
                         testing::FolderName());

// Several inputs in one session (prompts of different lengths, sequences that end at different
// steps): each must come out as it did alone, padded with pad_token_id to the longest.
TEST(TinyCheckpointBatch, BeamSearchOverSeveralInputsMatchesSingleRuns) {
  const Reference& ref = Reference::tiny();
  const std::filesystem::path dir = kTiny / "native-safetensors-fp32";
  const Model model(dir);
  std::vector<const json*> pairs;
  for (const json& pair : ref.generations.at("pairs")) {
    if (pair.at("image") == "image0.png" && pairs.size() < 5) pairs.push_back(&pair);
  }
  for (int beams : {1, 3}) {
    SCOPED_TRACE(beams);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<std::vector<int32_t>> expected;
    for (const json* pair : pairs) {
      prompts.push_back(pair->at("prompt_ids").get<std::vector<int32_t>>());
      for (const json& run : pair->at("runs")) {
        if (run.at("name") == (beams == 1 ? "greedy" : "beam3")) {
          expected.push_back(run.at("token_ids").get<std::vector<int32_t>>());
        }
      }
    }
    ASSERT_EQ(expected.size(), pairs.size());
    int h = 0, w = 0;
    std::vector<float> pixels = pixels_of(ref.images.at("image0.png"), model.preprocess_options(),
                                          static_cast<int>(pairs.size()), &h, &w);
    const EncodedBatch encoded = model.encode(
        nn::Tensor::view(pixels.data(), {static_cast<int64_t>(pairs.size()), 3, h, w}), prompts);
    GenerationConfig config = GenerationConfig::from_model_dir(dir);
    config.num_beams = beams;
    config.max_new_tokens = 40;
    auto session = model.start(encoded, beams, config.resolved_max_length() - 1);
    const GenerationResult out = generate(*session, config);
    ASSERT_EQ(out.sequences.size(), pairs.size());
    size_t longest = 0;
    for (const auto& e : expected) longest = std::max(longest, e.size());
    for (size_t b = 0; b < pairs.size(); ++b) {
      std::vector<int32_t> padded = expected[b];
      padded.resize(longest, 1);  // pad_token_id
      EXPECT_EQ(out.sequences[b], padded) << "input " << b;
      EXPECT_EQ(out.lengths[b] + 1, static_cast<int>(expected[b].size()));
    }
  }
}

}  // namespace
}  // namespace celeriac::florence
