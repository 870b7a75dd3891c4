// Florence-2 as one object: a checkpoint folder (config.json, weights, tokenizer,
// preprocessor_config.json) loaded once, then images + prompt ids in, decoder sessions out.
//
//   Model model("/models/Florence-2-base-ft");
//   EncodedBatch enc = model.encode(pixels, {prompt_ids});     // [B, 3, H, W], B prompts
//   auto session = model.start(enc, /*beams_per_input=*/3);     // rows = B × 3
//   const float* logits = session->step({2, 2, 2});             // decoder_start_token_id per row
//
// What the encoder sees (spec §6, transformers' Florence2ForConditionalGeneration): per input,
// [visual tokens, prompt embeddings] (image first; the prompt ids carry <s> ... </s>). Inputs of
// different lengths in one batch are padded on the right, as the processor pads, and the padded
// rows are masked as keys in the encoder's self-attention and in the decoder's cross-attention
// (the processor's attention_mask): every input comes out exactly as if it had been alone.
//
// The search (greedy / beam, florence/generate.h) drives the session; the model never holds
// tokens. One Model is shared by threads: encode() and start() are const and thread-safe, each
// session belongs to one thread at a time. The model must outlive its sessions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <vector>

#include "florence/config.h"
#include "florence/decoder_session.h"
#include "image/preprocess.h"
#include "nn/tensor.h"

namespace celeriac::florence {

class BartDecoder;
class BartEncoder;
class Checkpoint;
class Tokenizer;
class VisionEncoder;

// Encoder output for a batch, ready for start(): input b's states are rows [0, lengths[b]) of
// states[b]; the rows after them are padding (never attended to).
struct EncodedBatch {
  nn::Tensor states;             // [B, S_max, d_model]
  std::vector<int64_t> lengths;  // [B]: visual tokens + prompt tokens of each input
  int64_t inputs() const { return static_cast<int64_t>(lengths.size()); }
};

struct ModelOptions {
  // Load the tokenizer files when the folder has them (tokenizer() is null otherwise).
  bool load_tokenizer = true;
  // Read every page of the weights at load (MAP_POPULATE) instead of on first use.
  bool populate = false;
  // Decode steps read bf16 copies of the decoder's weights (BartDecoder::use_bf16_weights): half
  // the bytes per step, widened exactly to fp32 in the product (any AVX2 CPU).
  bool bf16_decoder = false;
  // The vision tower's and text encoder's products run as bf16 GEMMs (weights and activations
  // rounded to bf16, fp32 accumulation: about twice the fp32 rate) where the CPU has bf16
  // arithmetic (nn::bf16_gemm_supported(): AVX512_BF16 or AMX); elsewhere they stay fp32 and
  // Model::bf16_encoders() says so. Changes results more than bf16_decoder: activations round.
  bool bf16_encoders = false;
  // Otherwise the fp32 weights the decode steps stream are copied onto huge pages by the first
  // start() (BartDecoder::use_huge_page_weights; same resident size, 0.1-0.5 s once; packed for
  // the faster decode product on AVX2/AVX-512 CPUs), as the mapped weights are read in on first
  // use. Off keeps the steps on the file's page cache, which processes on one machine share.
  bool huge_page_decoder = true;
  // The vision tower's fp32 GEMMs read weights reordered once at load into oneDNN's blocked
  // layout (VisionEncoder::use_reordered_weights: ~9% faster tower on Zen 4, ~0.2 s and no more
  // resident memory: the mapped pages leave the resident set). Not with bf16_encoders.
  bool reordered_vision_weights = true;
};

class Model {
 public:
  // Throws WeightsError (config/weights), TokenizerLoadError, image::ImageError (preprocessor
  // config) or std::invalid_argument (a text activation other than GELU).
  explicit Model(const std::filesystem::path& dir, const ModelOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const Florence2Config& config() const;
  const Checkpoint& checkpoint() const { return *checkpoint_; }
  // Null when the folder holds no tokenizer files (or options.load_tokenizer was false).
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  // preprocessor_config.json's settings (Florence-2's defaults when the file is absent).
  const image::PreprocessOptions& preprocess_options() const { return preprocess_; }

  // Width of the logits rows: the remote code's vocabulary (51289 for Florence-2). Native
  // checkpoints pad their embedding to 51328 rows; those rows (<image> and padding) are never
  // produced by the reference and are left out, as the remote code's softmax leaves them out.
  int vocab_size() const;

  // pixels [B, 3, H, W] (normalised, NCHW) and B prompts (token ids incl. <s> and </s>).
  // Throws nn::ShapeError for a mismatch (B, prompt longer than the position table allows,
  // empty prompt) and an id outside the embedding.
  EncodedBatch encode(const nn::Tensor& pixels,
                      const std::vector<std::vector<int32_t>>& prompt_ids) const;
  // The same from visual tokens already computed ([B, N, d_model], e.g. VisionEncoder::encode).
  EncodedBatch encode_visual(const nn::Tensor& visual_tokens,
                             const std::vector<std::vector<int32_t>>& prompt_ids) const;

  // A decoder session over `encoded`: row r decodes input r / beams_per_input. Cross-attention
  // keys/values are computed here, once per input (not per beam). max_steps bounds the tokens
  // one row can take (the key/value cache is reserved for it up front); 0 means the position
  // table's limit (max_position_embeddings, 1024). reorder() may only move rows within the beams
  // of one input (std::invalid_argument otherwise).
  std::unique_ptr<DecoderSession> start(const EncodedBatch& encoded, int beams_per_input,
                                        int max_steps = 0) const;

  // Whether the encoders run bf16 GEMMs (ModelOptions::bf16_encoders on a CPU that has them).
  bool bf16_encoders() const { return bf16_encoders_; }

  const VisionEncoder& vision() const { return *vision_; }
  const BartEncoder& text_encoder() const { return *encoder_; }
  const BartDecoder& text_decoder() const { return *decoder_; }

 private:
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<Tokenizer> tokenizer_;
  image::PreprocessOptions preprocess_;
  std::unique_ptr<VisionEncoder> vision_;
  std::unique_ptr<BartEncoder> encoder_;
  std::unique_ptr<BartDecoder> decoder_;
  bool bf16_encoders_ = false;
  bool huge_page_decoder_ = false;         // ModelOptions: copy at the first start()
  mutable std::once_flag huge_page_once_;  // sessions only exist after the copy
};

}  // namespace celeriac::florence
