// DaViT forward. Each block half follows the reference module by module (transformers'
// Florence2VisionSpatialBlock / ChannelBlock, spec §4.3-4.4):
//   x += dw1(x);  x += proj(attention(qkv(LN1(x))));  x += dw2(x);  x += fc2(gelu(fc1(LN2(x))))
// The residual adds of the attention and MLP branches are fused into the last Linear (oneDNN's
// sum post-op) or into the window un-partition.
#include "florence/davit.h"

#include <algorithm>
#include <cmath>
#include <malloc.h>
#include <string>

#include "florence/weights_bf16.h"
#include "florence/weights_checkpoint.h"
#include "nn/attention.h"
#include "nn/conv.h"
#include "nn/elementwise.h"
#include "nn/linear.h"
#include "nn/norm.h"
#include "nn/window.h"

namespace celeriac::florence {
namespace {

nn::Tensor weight(const Checkpoint& ckpt, const std::string& name) {
  const TensorView& view = ckpt.tensor(name);
  std::span<const float> data = ckpt.f32(name);
  return nn::Tensor::view(data.data(), nn::Shape(std::span<const int64_t>(view.shape)));
}

DavitBlockWeights block_weights(const Checkpoint& ckpt, const std::string& prefix,
                                const std::string& attn) {
  auto w = [&](const std::string& name) { return weight(ckpt, prefix + name); };
  DavitBlockWeights b;
  b.dw1_w = w("conv1.fn.dw.weight");
  b.dw1_b = w("conv1.fn.dw.bias");
  b.norm1_w = w(attn + ".norm.weight");
  b.norm1_b = w(attn + ".norm.bias");
  b.qkv_w = w(attn + ".fn.qkv.weight");
  b.qkv_b = w(attn + ".fn.qkv.bias");
  b.proj_w = w(attn + ".fn.proj.weight");
  b.proj_b = w(attn + ".fn.proj.bias");
  b.dw2_w = w("conv2.fn.dw.weight");
  b.dw2_b = w("conv2.fn.dw.bias");
  b.norm2_w = w("ffn.norm.weight");
  b.norm2_b = w("ffn.norm.bias");
  b.fc1_w = w("ffn.fn.net.fc1.weight");
  b.fc1_b = w("ffn.fn.net.fc1.bias");
  b.fc2_w = w("ffn.fn.net.fc2.weight");
  b.fc2_b = w("ffn.fn.net.fc2.bias");
  return b;
}

// x += dw(x): depthwise 3×3, stride 1, pad 1 on the map [B, H, W, C]; `tmp` is x-sized.
void depthwise_residual(const nn::Tensor& x, const nn::Tensor& w, const nn::Tensor& b,
                        const nn::Tensor& tmp) {
  const int groups = static_cast<int>(x.dim(3));
  nn::conv2d(x, nn::ImageLayout::kNHWC, w, &b, {.stride = 1, .padding = 1, .groups = groups}, tmp);
  nn::add(x, tmp, x);
}

// Rows per pass of the MLP and of the window attention: the 4x-wide hidden layer and the 3x-wide
// qkv exist for one chunk of tokens at a time (stage 0: 8 MB instead of 75 MB and 6 MB instead of
// 57 MB), which keeps the encoder's peak memory down; 4,096 rows still run oneDNN's GEMMs at full
// rate.
constexpr int64_t kChunkRows = 2048;

// x += fc2(gelu(fc1(LN2(x)))) over the tokens of x, a chunk of rows at a time.
void mlp_residual(const nn::Tensor& x, const DavitBlockWeights& w, float eps,
                  const nn::Tensor& tmp) {
  const int64_t n = x.rows(), c = x.dim(-1);
  const nn::Tensor tokens = x.reshape({n, c});
  const nn::Tensor normed = tmp.reshape({n, c});
  const int64_t chunk = std::min(n, kChunkRows);
  const nn::Tensor hidden = nn::Tensor::empty({chunk, w.fc1_w.dim(0)});
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t r1 = std::min(n, r0 + chunk);
    const nn::Tensor t = tokens.slice0(r0, r1), h = hidden.slice0(0, r1 - r0);
    const nn::Tensor normed_rows = normed.slice0(r0, r1);
    nn::layer_norm(t, w.norm2_w, w.norm2_b, eps, normed_rows);
    nn::linear(normed_rows, w.fc1_w, w.fc1_16, w.fc1_g, &w.fc1_b, h,
               {.activation = nn::Activation::kGelu});
    nn::linear(h, w.fc2_w, w.fc2_16, w.fc2_g, &w.fc2_b, t, {.accumulate = true});
  }
}

void spatial_block(const nn::Tensor& x, const DavitBlockWeights& w, int64_t heads, int64_t window,
                   float eps) {
  const int64_t b = x.dim(0), h = x.dim(1), wd = x.dim(2), c = x.dim(3);
  nn::Tensor tmp = nn::Tensor::empty(x.shape());
  depthwise_residual(x, w.dw1_w, w.dw1_b, tmp);

  // Window attention on LN1(x); padding (right/bottom, to multiples of the window) comes after
  // the norm, so padded tokens are zeros whose keys/values are the qkv bias, unmasked (§4.3).
  nn::layer_norm(x, w.norm1_w, w.norm1_b, eps, tmp);
  const int64_t n_windows = b * nn::windows_along(h, window) * nn::windows_along(wd, window);
  const int64_t per_window = window * window;
  // A chunk of windows at a time: gathered from the normed map, qkv, attention, proj written
  // back over the chunk's own (consumed) rows, then added into x. No buffer spans the map.
  const int64_t chunk = std::clamp<int64_t>(kChunkRows / per_window, 1, n_windows);
  const nn::Tensor windows = nn::Tensor::empty({chunk, per_window, c});
  const nn::Tensor qkv = nn::Tensor::empty({chunk, per_window, 3 * c});
  const nn::Tensor attended = nn::Tensor::empty({chunk, per_window, c});
  const int64_t head_dim = c / heads, window_stride = per_window * 3 * c;
  for (int64_t w0 = 0; w0 < n_windows; w0 += chunk) {
    const int64_t count = std::min(n_windows, w0 + chunk) - w0;
    const nn::Tensor in = windows.slice0(0, count);
    const nn::Tensor q = qkv.slice0(0, count), a = attended.slice0(0, count);
    nn::window_partition(tmp, window, in, w0);
    nn::linear(in, w.qkv_w, w.qkv16, w.qkv_g, &w.qkv_b, q);
    nn::AttentionParams params{.batch = count,
                               .heads = heads,
                               .head_dim = head_dim,
                               .scale = static_cast<float>(1.0 / std::sqrt(double(head_dim)))};
    const float* base = q.data();
    nn::attention({base, per_window, window_stride, 3 * c},
                  {base + c, per_window, window_stride, 3 * c},
                  {base + 2 * c, per_window, window_stride, 3 * c}, params,
                  {a.mutable_data(), per_window * c, c});
    // proj is per token: window order is fine
    nn::linear(a, w.proj_w, w.proj16, w.proj_g, &w.proj_b, in);
    nn::window_reverse(in, window, x, /*accumulate=*/true, w0);
  }

  depthwise_residual(x, w.dw2_w, w.dw2_b, tmp);
  mlp_residual(x, w, eps, tmp);
}

void channel_block(const nn::Tensor& x, const DavitBlockWeights& w, int64_t groups, float eps) {
  const int64_t b = x.dim(0), n = x.dim(1) * x.dim(2), c = x.dim(3);
  nn::Tensor tmp = nn::Tensor::empty(x.shape());
  depthwise_residual(x, w.dw1_w, w.dw1_b, tmp);

  // Channel attention: d × d attention per group over all N tokens, q·k scaled by N^-0.5 (§4.4).
  // Two passes over chunks of tokens (nn/attention.h): q|k to sum the scores, then v to apply
  // them, so the 3C-wide projection never exists for all tokens. The qkv weight's rows are
  // [q; k; v], so q|k and v are row ranges of it.
  const nn::Tensor normed = tmp.reshape({b, n, c});
  nn::layer_norm(x, w.norm1_w, w.norm1_b, eps, normed);
  const nn::Tensor wqk = nn::Tensor::view(w.qkv_w.data(), {2 * c, c});
  const nn::Tensor bqk = nn::Tensor::view(w.qkv_b.data(), {2 * c});
  const nn::Tensor wv = nn::Tensor::view(w.qkv_w.data() + 2 * c * c, {c, c});
  const nn::Tensor bv = nn::Tensor::view(w.qkv_b.data() + 2 * c, {c});
  const nn::Bf16Weights wqk16 = w.qkv16.empty() ? w.qkv16 : w.qkv16.rows_view(0, 2 * c);
  const nn::Bf16Weights wv16 = w.qkv16.empty() ? w.qkv16 : w.qkv16.rows_view(2 * c, 3 * c);
  const float scale = static_cast<float>(1.0 / std::sqrt(double(n)));
  const int64_t chunk = std::min(n, kChunkRows);
  const nn::Tensor qk = nn::Tensor::empty({chunk, 2 * c});
  const nn::Tensor v = nn::Tensor::empty({chunk, c});
  const nn::Tensor attended = nn::Tensor::empty({chunk, c});
  for (int64_t i = 0; i < b; ++i) {
    const nn::Tensor tokens = normed.slice0(i, i + 1).reshape({n, c});
    const nn::Tensor out = x.slice0(i, i + 1).reshape({n, c});
    nn::ChannelScores scores(groups, c);
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
      const int64_t r1 = std::min(n, r0 + chunk);
      const nn::Tensor rows = qk.slice0(0, r1 - r0);
      nn::linear(tokens.slice0(r0, r1), wqk, wqk16, w.qk_g, &bqk, rows);
      scores.accumulate(rows);
    }
    scores.finish(scale);
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
      const int64_t r1 = std::min(n, r0 + chunk);
      const nn::Tensor vr = v.slice0(0, r1 - r0), ar = attended.slice0(0, r1 - r0);
      nn::linear(tokens.slice0(r0, r1), wv, wv16, w.v_g, &bv, vr);
      scores.apply(vr, ar);
      nn::linear(ar, w.proj_w, w.proj16, w.proj_g, &w.proj_b, out.slice0(r0, r1),
                 {.accumulate = true});
    }
  }

  depthwise_residual(x, w.dw2_w, w.dw2_b, tmp);
  mlp_residual(x, w, eps, tmp);
}

}  // namespace

VisionEncoder::VisionEncoder(const Checkpoint& ckpt) : config_(ckpt.config().vision) {
  const size_t n_stages = config_.dim_embed.size();
  for (size_t s = 0; s < n_stages; ++s) {
    const std::string conv = "vision_tower.convs." + std::to_string(s) + ".";
    DavitStageWeights stage;
    stage.conv_w = weight(ckpt, conv + "proj.weight");
    stage.conv_b = weight(ckpt, conv + "proj.bias");
    stage.norm_w = weight(ckpt, conv + "norm.weight");
    stage.norm_b = weight(ckpt, conv + "norm.bias");
    for (int j = 0; j < config_.depths[s]; ++j) {
      const std::string block =
          "vision_tower.blocks." + std::to_string(s) + "." + std::to_string(j) + ".";
      stage.spatial.push_back(block_weights(ckpt, block + "spatial_block.", "window_attn"));
      stage.channel.push_back(block_weights(ckpt, block + "channel_block.", "channel_attn"));
    }
    stages_.push_back(std::move(stage));
  }
  row_embed_ = weight(ckpt, "image_pos_embed.row_embeddings.weight");
  column_embed_ = weight(ckpt, "image_pos_embed.column_embeddings.weight");
  temporal_ = weight(ckpt, "visual_temporal_embed.pos_idx_to_embed");
  projection_ = weight(ckpt, "image_projection");
  proj_norm_w_ = weight(ckpt, "image_proj_norm.weight");
  proj_norm_b_ = weight(ckpt, "image_proj_norm.bias");
}

void VisionEncoder::use_bf16_weights(const Checkpoint& checkpoint) {
  for (DavitStageWeights& stage : stages_)
    for (auto* blocks : {&stage.spatial, &stage.channel})
      for (DavitBlockWeights& b : *blocks) {
        b.qkv16 = bf16_copy(checkpoint, b.qkv_w);
        b.proj16 = bf16_copy(checkpoint, b.proj_w);
        b.fc1_16 = bf16_copy(checkpoint, b.fc1_w);
        b.fc2_16 = bf16_copy(checkpoint, b.fc2_w);
      }
}

void VisionEncoder::use_reordered_weights(const Checkpoint& checkpoint) {
  // Reordered for chunks of kChunkRows tokens; a product of another size whose layout oneDNN
  // would choose differently reads the stored weights instead (nn::linear), so this is a hint.
  auto reorder = [&](const nn::Tensor& w) { return nn::GemmWeights::from(w, kChunkRows); };
  for (DavitStageWeights& stage : stages_) {
    for (DavitBlockWeights& b : stage.spatial) b.qkv_g = reorder(b.qkv_w);
    for (DavitBlockWeights& b : stage.channel) {
      const int64_t c = b.qkv_w.dim(1);
      b.qk_g = reorder(nn::Tensor::view(b.qkv_w.data(), {2 * c, c}));
      b.v_g = reorder(nn::Tensor::view(b.qkv_w.data() + 2 * c * c, {c, c}));
    }
    for (auto* blocks : {&stage.spatial, &stage.channel})
      for (DavitBlockWeights& b : *blocks) {
        b.proj_g = reorder(b.proj_w);
        b.fc1_g = reorder(b.fc1_w);
        b.fc2_g = reorder(b.fc2_w);
        for (const nn::Tensor* w : {&b.qkv_w, &b.proj_w, &b.fc1_w, &b.fc2_w})
          checkpoint.release_pages(w->values());
      }
  }
}

nn::Tensor VisionEncoder::tower(const nn::Tensor& pixels, std::vector<nn::Tensor>* stages) const {
  if (pixels.rank() != 4 || pixels.dim(1) != 3)
    throw nn::ShapeError("vision tower: pixels " + pixels.shape().to_string() +
                         ", expected [B, 3, H, W]");
  const int64_t b = pixels.dim(0);
  nn::Tensor x;  // the current map [B, H, W, C]
  for (size_t s = 0; s < stages_.size(); ++s) {
    // Idle buffers of the previous stage (or of the previous request's text side, before stage 0)
    // are of sizes this stage will not ask for.
    nn::release_cached_buffers();
    const DavitStageWeights& st = stages_[s];
    const nn::Conv2dParams conv{.stride = config_.patch_stride[s],
                                .padding = config_.patch_padding[s]};
    const int64_t k = st.conv_w.dim(2), cout = st.conv_w.dim(0);
    if (s == 0) {
      // Stage 0: conv on the image, then LayerNorm (patch_prenorm false).
      nn::Tensor y = nn::Tensor::empty({b, nn::conv2d_output_size(pixels.dim(2), k, conv),
                                        nn::conv2d_output_size(pixels.dim(3), k, conv), cout});
      nn::conv2d(pixels, nn::ImageLayout::kNCHW, st.conv_w, &st.conv_b, conv, y);
      if (!config_.patch_prenorm[s]) nn::layer_norm(y, st.norm_w, st.norm_b, ln_eps_, y);
      x = y;
    } else {
      // Later stages: LayerNorm on the incoming tokens, then the strided conv.
      nn::Tensor in = x;
      if (config_.patch_prenorm[s]) {
        in = nn::Tensor::empty(x.shape());
        nn::layer_norm(x, st.norm_w, st.norm_b, ln_eps_, in);
      }
      nn::Tensor y = nn::Tensor::empty({b, nn::conv2d_output_size(x.dim(1), k, conv),
                                        nn::conv2d_output_size(x.dim(2), k, conv), cout});
      nn::conv2d(in, nn::ImageLayout::kNHWC, st.conv_w, &st.conv_b, conv, y);
      if (!config_.patch_prenorm[s]) nn::layer_norm(y, st.norm_w, st.norm_b, ln_eps_, y);
      x = y;
    }
    nn::release_cached_buffers();  // the previous map and its normed copy, freed by the conv
    for (size_t j = 0; j < st.spatial.size(); ++j) {
      spatial_block(x, st.spatial[j], config_.num_heads[s], config_.window_size, ln_eps_);
      channel_block(x, st.channel[j], config_.num_groups[s], ln_eps_);
    }
    if (stages) stages->push_back(x);
  }
  // The stage buffers (tens of MB at 768²) would otherwise sit idle through the text encoder and
  // the whole decode, on top of the language model's weights; so would the heap pages that
  // oneDNN's per-call buffers left free (malloc_trim returns them: ~30 MB, bench/florence
  // --stage-rss). Both are reused within the encoder, where freeing them costs page faults.
  nn::release_cached_buffers();
  malloc_trim(0);
  return x;
}

nn::Tensor VisionEncoder::project(const nn::Tensor& features) const {
  const int64_t b = features.dim(0), h = features.dim(1), w = features.dim(2), c = features.dim(3),
                n = h * w;
  const int64_t col_dim = column_embed_.dim(1), row_dim = row_embed_.dim(1);
  if (features.rank() != 4 || col_dim + row_dim != c || h > row_embed_.dim(0) ||
      w > column_embed_.dim(0) || temporal_.dim(1) != c)
    throw nn::ShapeError("image projection: features " + features.shape().to_string());
  // tokens[b, 1 + t, :] = features + pos (column half first, row half second) + temporal row 0;
  // tokens[b, 0, :] = their mean (spatial_avg_pool; one frame makes temporal_avg_pool the tokens).
  nn::Tensor tokens = nn::Tensor::empty({b, 1 + n, c});
  const float* f = features.data();
  const float* temporal0 = temporal_.data();
  float* out = tokens.mutable_data();
  std::vector<double> sum(c);
  for (int64_t bi = 0; bi < b; ++bi) {
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t xx = 0; xx < w; ++xx) {
        const int64_t t = y * w + xx;
        const float* src = f + (bi * n + t) * c;
        float* dst = out + (bi * (1 + n) + 1 + t) * c;
        const float* col = column_embed_.data() + xx * col_dim;
        const float* row = row_embed_.data() + y * row_dim;
        for (int64_t ch = 0; ch < c; ++ch) {
          float pos = ch < col_dim ? col[ch] : row[ch - col_dim];
          dst[ch] = (src[ch] + pos) + temporal0[ch];
          sum[ch] += dst[ch];
        }
      }
    float* pooled = out + bi * (1 + n) * c;
    for (int64_t ch = 0; ch < c; ++ch) pooled[ch] = static_cast<float>(sum[ch] / double(n));
  }
  nn::Tensor projected = nn::Tensor::empty({b, 1 + n, projection_.dim(1)});
  nn::matmul(tokens.reshape({b * (1 + n), c}), projection_,
             projected.reshape({b * (1 + n), projection_.dim(1)}));
  nn::layer_norm(projected, proj_norm_w_, proj_norm_b_, ln_eps_, projected);
  return projected;
}

}  // namespace celeriac::florence
