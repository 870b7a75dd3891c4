// BART decoder steps (transformers' BartDecoder / BartDecoderLayer with a cache, eager attention,
// post-LN). All rows of a session advance together: every row's token sits at the same position.
#include "florence/bart_decoder.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>

#include "florence/bart_kv_cache.h"
#include "florence/weights_bf16.h"
#include "florence/weights_checkpoint.h"
#include "florence/weights_layout.h"
#include "nn/attention.h"
#include "nn/elementwise.h"
#include "nn/linear.h"
#include "nn/norm.h"

namespace celeriac::florence {

class BartDecoderSession : public DecoderSession {
 public:
  BartDecoderSession(const BartDecoder& decoder, const nn::Tensor& states,
                     std::span<const int64_t> lengths, int beams, int max_steps);

  int rows() const override { return rows_; }
  int vocab_size() const override { return decoder_.vocab_size(); }
  const float* step(const std::vector<int32_t>& tokens) override;
  void reorder(const std::vector<int>& parents) override;
  std::vector<PhaseTime> phase_times() const override;

 private:
  // The parts of a step, timed by mark() (a clock read each, ~20 ns: left on).
  enum Phase { kEmbed, kSelfQkv, kSelfAttend, kSelfOut, kCrossQ, kCrossAttend, kCrossOut, kFfn,
               kLmHead, kPhases };
  void mark(Phase done);

  const BartDecoder& decoder_;
  const int inputs_, beams_, rows_, d_, heads_;
  const float scale_;                          // head_dim^-0.5
  std::vector<int64_t> lengths_;               // [inputs] valid encoder rows
  int64_t enc_seq_ = 0;                        // S: rows per input in the cross K/V
  std::vector<nn::FixedKv> cross_;             // per layer, keys/values of [inputs, S, d]
  BeamKvCache cache_;
  // Step buffers, allocated once.
  nn::Tensor x_, q_, attended_;  // [rows, d]
  nn::Tensor hidden_;            // [rows, F]
  nn::Tensor logits_;            // [rows, V]
  std::array<double, kPhases> phase_s_{};
  std::chrono::steady_clock::time_point last_mark_;
};

void BartDecoderSession::mark(Phase done) {
  const auto now = std::chrono::steady_clock::now();
  phase_s_[done] += std::chrono::duration<double>(now - last_mark_).count();
  last_mark_ = now;
}

std::vector<DecoderSession::PhaseTime> BartDecoderSession::phase_times() const {
  static constexpr const char* kNames[kPhases] = {
      "embed",        "self_qkv",  "self_attend", "self_out_norm", "cross_q",
      "cross_attend", "cross_out_norm", "ffn_norm",    "lm_head"};
  std::vector<PhaseTime> out;
  for (int p = 0; p < kPhases; ++p) out.push_back({kNames[p], phase_s_[p]});
  return out;
}

BartDecoderSession::BartDecoderSession(const BartDecoder& decoder, const nn::Tensor& states,
                                       std::span<const int64_t> lengths, int beams, int max_steps)
    : decoder_(decoder),
      inputs_(static_cast<int>(states.dim(0))),
      beams_(beams),
      rows_(inputs_ * beams),
      d_(decoder.config_.d_model),
      heads_(decoder.config_.decoder_attention_heads),
      scale_(static_cast<float>(1.0 / std::sqrt(static_cast<double>(d_ / heads_)))),
      lengths_(lengths.begin(), lengths.end()),
      enc_seq_(states.dim(1)),
      cache_(static_cast<int>(decoder.layers_.size()), rows_, max_steps, d_) {
  // Cross-attention keys/values of every layer, once for the whole session (the reference
  // computes them at the first step and keeps them in its cache).
  const nn::Tensor flat = states.reshape({inputs_ * enc_seq_, d_});
  for (const BartDecoderLayerWeights& layer : decoder.layers_) {
    const BartAttentionWeights& a = layer.cross_attn;
    cross_.emplace_back(nn::linear(flat, a.k_w, &a.k_b).reshape({inputs_, enc_seq_, d_}),
                        nn::linear(flat, a.v_w, &a.v_b).reshape({inputs_, enc_seq_, d_}), heads_,
                        lengths_);
  }
  x_ = nn::Tensor::empty({rows_, d_});
  q_ = nn::Tensor::empty({rows_, d_});
  attended_ = nn::Tensor::empty({rows_, d_});
  hidden_ = nn::Tensor::empty({rows_, decoder.config_.decoder_ffn_dim});
  logits_ = nn::Tensor::empty({rows_, decoder.vocab_size()});
}

const float* BartDecoderSession::step(const std::vector<int32_t>& tokens) {
  if (static_cast<int>(tokens.size()) != rows_)
    throw nn::ShapeError("decoder step: " + std::to_string(tokens.size()) + " tokens for " +
                         std::to_string(rows_) + " rows");
  const BartDecoder& dec = decoder_;
  last_mark_ = std::chrono::steady_clock::now();
  const int t = cache_.append();

  // x [rows, d] = LN_emb(shared[token] · scale + E_pos[t + 2])
  embed_tokens(dec.embeddings_, tokens, x_);
  nn::add_row(x_, dec.embeddings_.positions.slice0(t + 2, t + 3).reshape({d_}), x_);
  nn::layer_norm(x_, dec.embeddings_.norm.weight, dec.embeddings_.norm.bias, kBartLayerNormEps, x_);
  mark(kEmbed);

  for (size_t l = 0; l < dec.layers_.size(); ++l) {
    const BartDecoderLayerWeights& layer = dec.layers_[l];
    const int li = static_cast<int>(l);
    // Self-attention: this position's keys/values go straight into the cache block.
    const BartAttentionWeights& sa = layer.self_attn;
    if (!sa.q_p.empty()) {  // packed: the three in one pass
      const nn::PackedOutput qkv[] = {{&sa.q_p, &sa.q_b, q_},
                                      {&sa.k_p, &sa.k_b, cache_.keys(li, t)},
                                      {&sa.v_p, &sa.v_b, cache_.values(li, t)}};
      nn::linear(x_, qkv);
    } else {
      nn::linear(x_, sa.q_w, sa.q16, sa.q_p, &sa.q_b, q_);
      nn::linear(x_, sa.k_w, sa.k16, sa.k_p, &sa.k_b, cache_.keys(li, t));
      nn::linear(x_, sa.v_w, sa.v16, sa.v_p, &sa.v_b, cache_.values(li, t));
    }
    mark(kSelfQkv);
    cache_.attend(li, q_, heads_, scale_, attended_);
    mark(kSelfAttend);
    bart_attention_output(x_, attended_, sa, layer.self_attn_norm);
    mark(kSelfOut);

    // Cross-attention: input b's beams are the `beams_` query rows of its keys.
    const BartAttentionWeights& ca = layer.cross_attn;
    nn::linear(x_, ca.q_w, ca.q16, ca.q_p, &ca.q_b, q_);
    mark(kCrossQ);
    cross_[l].attend(q_, beams_, scale_, attended_);
    mark(kCrossAttend);
    bart_attention_output(x_, attended_, ca, layer.cross_attn_norm);
    mark(kCrossOut);

    bart_ffn_block(x_, layer.ffn, hidden_);
    mark(kFfn);
  }
  nn::linear(x_, dec.lm_head_, dec.lm_head16_, dec.lm_head_packed_,
             dec.has_logits_bias_ ? &dec.logits_bias_ : nullptr, logits_);
  mark(kLmHead);
  return logits_.data();
}

void BartDecoderSession::reorder(const std::vector<int>& parents) {
  // Cross-attention keys are per input: a row may only continue a beam of its own input.
  for (int i = 0; i < static_cast<int>(parents.size()) && i < rows_; ++i)
    if (parents[i] >= 0 && parents[i] / beams_ != i / beams_)
      throw std::invalid_argument("reorder: row " + std::to_string(i) + " (input " +
                                  std::to_string(i / beams_) + ") cannot continue row " +
                                  std::to_string(parents[i]) + " of another input");
  cache_.reorder(parents);
}

std::vector<BartDecoder::StreamedWeight> BartDecoder::streamed_weights() {
  std::vector<StreamedWeight> out;
  for (BartDecoderLayerWeights& layer : layers_) {
    BartAttentionWeights& sa = layer.self_attn;
    BartAttentionWeights& ca = layer.cross_attn;
    BartFfnWeights& ffn = layer.ffn;
    out.insert(out.end(), {{&sa.q_w, &sa.q16, &sa.q_p},
                           {&sa.k_w, &sa.k16, &sa.k_p},
                           {&sa.v_w, &sa.v16, &sa.v_p},
                           {&sa.out_w, &sa.out16, &sa.out_p},
                           {&ca.q_w, &ca.q16, &ca.q_p},
                           {&ca.out_w, &ca.out16, &ca.out_p},
                           {&ffn.fc1_w, &ffn.fc1_16, &ffn.fc1_p},
                           {&ffn.fc2_w, &ffn.fc2_16, &ffn.fc2_p}});
  }
  out.push_back({&lm_head_, &lm_head16_, &lm_head_packed_});
  return out;
}

void BartDecoder::use_bf16_weights(const Checkpoint& checkpoint) {
  if (bf16_weights()) return;
  // Converting reads every fp32 page once; afterwards only the copies are read. The tied table's
  // token embedding lookups fault back the few rows a request reads.
  for (const StreamedWeight& w : streamed_weights()) *w.bf16 = bf16_copy(checkpoint, *w.fp32);
}

void BartDecoder::use_huge_page_weights(const Checkpoint& checkpoint) {
  if (bf16_weights() || packed_weights()) return;  // the steps read the bf16 or packed copies
  // Upcasts of fp16/bf16 files are owned buffers on huge pages already: they stay.
  std::vector<StreamedWeight> hot;
  for (const StreamedWeight& w : streamed_weights())
    if (checkpoint.in_mapped_file(w.fp32->values())) hot.push_back(w);
  std::vector<nn::Tensor> originals;
  for (const StreamedWeight& w : hot) originals.push_back(*w.fp32);
  // The copies are read from the file (pread), never through the mapping, and the mapped pages
  // are released: the tied table's lookups fault back the few rows a request reads.
  if (nn::PackedWeights::supported()) {
    std::vector<nn::PackedWeights::Size> shapes;
    for (const nn::Tensor& w : originals) shapes.push_back({w.dim(0), w.dim(1)});
    const std::vector<nn::PackedWeights> packed = nn::PackedWeights::from_rows(
        shapes, [&](size_t i, int64_t r0, int64_t r1, float* out) {
          const int64_t k = originals[i].dim(1);
          checkpoint.copy_from_file(originals[i].values().subspan(r0 * k, (r1 - r0) * k), out);
        });
    for (size_t i = 0; i < hot.size(); ++i) {
      *hot[i].packed = packed[i];
      checkpoint.release_pages(originals[i].values());
    }
    return;
  }
  const std::vector<nn::Tensor> copies =
      nn::copy_to_huge_pages(originals, [&](const nn::Tensor& w, float* out) {
        checkpoint.copy_from_file(w.values(), out);
        checkpoint.release_pages(w.values());
      });
  for (size_t i = 0; i < hot.size(); ++i) *hot[i].fp32 = copies[i];
}

BartDecoder::BartDecoder(const Checkpoint& ckpt, int vocab) : config_(ckpt.config().text) {
  check_bart_activation(config_);
  embeddings_ = load_bart_embeddings(ckpt, config_, "decoder");
  for (int i = 0; i < config_.decoder_layers; ++i) {
    const std::string prefix = "language_model.model.decoder.layers." + std::to_string(i) + ".";
    layers_.push_back({load_bart_attention(ckpt, prefix + "self_attn."),
                       load_bart_norm(ckpt, prefix + "self_attn_layer_norm."),
                       load_bart_attention(ckpt, prefix + "encoder_attn."),
                       load_bart_norm(ckpt, prefix + "encoder_attn_layer_norm."),
                       load_bart_ffn(ckpt, prefix)});
  }
  const nn::Tensor& table = embeddings_.tokens;
  if (vocab < 1 || vocab > table.dim(0))
    throw nn::ShapeError("BART decoder: " + std::to_string(vocab) +
                         " logits from an embedding of " + std::to_string(table.dim(0)) + " rows");
  lm_head_ = table.slice0(0, vocab);
  const nn::Tensor bias = bart_weight(ckpt, std::string(kFinalLogitsBias));  // [1, rows]
  if (bias.numel() < vocab)
    throw nn::ShapeError("BART decoder: final_logits_bias " + bias.shape().to_string());
  logits_bias_ = bias.reshape({bias.numel()}).slice0(0, vocab);
  has_logits_bias_ = std::any_of(logits_bias_.data(), logits_bias_.data() + vocab,
                                 [](float b) { return b != 0.0f; });
}

std::unique_ptr<DecoderSession> BartDecoder::start(const nn::Tensor& encoder_states,
                                                   std::span<const int64_t> lengths,
                                                   int beams_per_input, int max_steps) const {
  if (encoder_states.rank() != 3 || encoder_states.dim(2) != config_.d_model ||
      static_cast<int64_t>(lengths.size()) != encoder_states.dim(0) || encoder_states.dim(0) < 1)
    throw nn::ShapeError("decoder start: states " + encoder_states.shape().to_string() + " with " +
                         std::to_string(lengths.size()) + " lengths");
  for (int64_t len : lengths)
    if (len < 1 || len > encoder_states.dim(1))
      throw nn::ShapeError("decoder start: length " + std::to_string(len) + " for " +
                           std::to_string(encoder_states.dim(1)) + " rows");
  if (beams_per_input < 1 || max_steps < 1 || max_steps > config_.max_position_embeddings)
    throw nn::ShapeError("decoder start: " + std::to_string(beams_per_input) + " beams, " +
                         std::to_string(max_steps) + " steps (position table " +
                         std::to_string(config_.max_position_embeddings) + ")");
  return std::make_unique<BartDecoderSession>(*this, encoder_states, lengths, beams_per_input,
                                              max_steps);
}

}  // namespace celeriac::florence
