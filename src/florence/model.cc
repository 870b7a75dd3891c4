// Model: loading, the image + prompt merge and the hand-off to the decoder (see model.h).
#include "florence/model.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <malloc.h>
#include <nlohmann/json.hpp>
#include <string>

#include "florence/bart_decoder.h"
#include "florence/bart_encoder.h"
#include "florence/davit.h"
#include "florence/tokenizer.h"
#include "florence/weights_checkpoint.h"
#include "nn/linear.h"

namespace celeriac::florence {
namespace {

bool has_tokenizer_files(const std::filesystem::path& dir) {
  return std::filesystem::exists(dir / "tokenizer.json") ||
         std::filesystem::exists(dir / "vocab.json");
}

// The remote code's vocabulary: native checkpoints add <image> (image_token_id, 51289) and pad
// the table to a multiple of 64 (spec §9.4); the remote code's logits stop before <image>.
int logits_vocab(const Florence2Config& config) {
  const int rows = config.text.vocab_size;
  if (config.image_token_id > 0 && config.image_token_id < rows) return config.image_token_id;
  return rows;
}

// preprocessor_config.json (the remote code's and transformers 4's file), else the
// "image_processor" object of processor_config.json (transformers 5's save_pretrained writes only
// that), else Florence-2's defaults.
image::PreprocessOptions load_image_options(const std::filesystem::path& dir) {
  const std::filesystem::path combined = dir / "processor_config.json";
  if (!std::filesystem::exists(dir / "preprocessor_config.json") &&
      std::filesystem::exists(combined)) {
    std::ifstream in(combined);
    const nlohmann::json doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (doc.is_object() && doc.contains("image_processor") && doc["image_processor"].is_object())
      return image::preprocess_options_from_json(doc["image_processor"]);
  }
  return image::load_preprocess_options(dir.string());
}

}  // namespace

Model::Model(const std::filesystem::path& dir, const ModelOptions& options) {
  // Blocks of 4 MiB and more (oneDNN's packing buffers for the vision GEMMs, the decoded image)
  // go straight back to the system when freed. glibc's default threshold rises after such frees
  // up to 32 MB, and then they stay in the heap between requests: peak RSS 1,023 -> 1,000 MiB on
  // Florence-2-base for ~1% more time in page faults (bench/florence). Process-wide, set once.
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  CheckpointOptions ckpt_options;
  ckpt_options.populate = options.populate;
  checkpoint_ = std::make_unique<Checkpoint>(Checkpoint::open(dir, ckpt_options));
  const std::filesystem::path folder = std::filesystem::is_directory(dir) ? dir : dir.parent_path();
  if (options.load_tokenizer && has_tokenizer_files(folder))
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load_florence(folder));
  preprocess_ = load_image_options(folder);
  vision_ = std::make_unique<VisionEncoder>(*checkpoint_);
  encoder_ = std::make_unique<BartEncoder>(*checkpoint_);
  decoder_ = std::make_unique<BartDecoder>(*checkpoint_, logits_vocab(checkpoint_->config()));
  if (options.bf16_decoder) decoder_->use_bf16_weights(*checkpoint_);
  bf16_encoders_ = options.bf16_encoders && nn::bf16_gemm_supported();
  if (bf16_encoders_) {
    vision_->use_bf16_weights(*checkpoint_);
    encoder_->use_bf16_weights(*checkpoint_);
  } else if (options.reordered_vision_weights) {
    vision_->use_reordered_weights(*checkpoint_);
  }
  huge_page_decoder_ = options.huge_page_decoder && !options.bf16_decoder;
}

Model::~Model() = default;

const Florence2Config& Model::config() const { return checkpoint_->config(); }

int Model::vocab_size() const { return decoder_->vocab_size(); }

EncodedBatch Model::encode(const nn::Tensor& pixels,
                           const std::vector<std::vector<int32_t>>& prompt_ids) const {
  if (pixels.rank() != 4 || pixels.dim(0) != static_cast<int64_t>(prompt_ids.size()))
    throw nn::ShapeError("encode: pixels " + pixels.shape().to_string() + " for " +
                         std::to_string(prompt_ids.size()) + " prompts");
  return encode_visual(vision_->encode(pixels), prompt_ids);
}

EncodedBatch Model::encode_visual(const nn::Tensor& visual_tokens,
                                  const std::vector<std::vector<int32_t>>& prompt_ids) const {
  const int64_t d = encoder_->d_model();
  if (visual_tokens.rank() != 3 || visual_tokens.dim(2) != d || visual_tokens.dim(0) < 1 ||
      visual_tokens.dim(0) != static_cast<int64_t>(prompt_ids.size()))
    throw nn::ShapeError("encode: visual tokens " + visual_tokens.shape().to_string() + " for " +
                         std::to_string(prompt_ids.size()) + " prompts, d_model " +
                         std::to_string(d));
  const int64_t b = visual_tokens.dim(0), n = visual_tokens.dim(1);
  EncodedBatch out;
  int64_t longest = 0;
  for (const auto& ids : prompt_ids) {
    if (ids.empty()) throw nn::ShapeError("encode: empty prompt (expected <s> ... </s>)");
    out.lengths.push_back(n + static_cast<int64_t>(ids.size()));
    longest = std::max(longest, out.lengths.back());
  }
  if (longest > encoder_->max_positions())
    throw nn::ShapeError("encode: " + std::to_string(n) + " visual + " +
                         std::to_string(longest - n) + " prompt tokens exceed the " +
                         std::to_string(encoder_->max_positions()) + " encoder positions");

  // embeds [B, S_max, d]: visual tokens, then the prompt's embeddings, then zero padding.
  nn::Tensor embeds = nn::Tensor::zeros({b, longest, d});
  for (int64_t bi = 0; bi < b; ++bi) {
    float* row0 = embeds.mutable_data() + bi * longest * d;
    std::memcpy(row0, visual_tokens.data() + bi * n * d, n * d * sizeof(float));
    const auto& ids = prompt_ids[bi];
    encoder_->embed_prompt(ids,
                           nn::Tensor::view(row0 + n * d, {static_cast<int64_t>(ids.size()), d}));
  }
  out.states = encoder_->forward(embeds, out.lengths);
  return out;
}

std::unique_ptr<DecoderSession> Model::start(const EncodedBatch& encoded, int beams_per_input,
                                             int max_steps) const {
  if (huge_page_decoder_)
    std::call_once(huge_page_once_, [&] { decoder_->use_huge_page_weights(*checkpoint_); });
  return decoder_->start(encoded.states, encoded.lengths, beams_per_input,
                         max_steps > 0 ? max_steps : decoder_->max_positions());
}

}  // namespace celeriac::florence
