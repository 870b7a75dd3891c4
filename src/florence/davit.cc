// DaViT forward. Each block half follows the reference module by module (transformers'
// Florence2VisionSpatialBlock / ChannelBlock, spec §4.3-4.4):
//   x += dw1(x);  x += proj(attention(qkv(LN1(x))));  x += dw2(x);  x += fc2(gelu(fc1(LN2(x))))
// The residual adds of the attention and MLP branches are fused into the last Linear (oneDNN's
// sum post-op) or into the window un-partition.
#include "florence/davit.h"

#include <cmath>
#include <string>

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

// x += fc2(gelu(fc1(LN2(x)))) over the tokens of x.
void mlp_residual(const nn::Tensor& x, const DavitBlockWeights& w, float eps,
                  const nn::Tensor& tmp) {
  const int64_t n = x.rows(), c = x.dim(-1);
  nn::Tensor tokens = x.reshape({n, c});
  nn::Tensor normed = tmp.reshape({n, c});
  nn::layer_norm(tokens, w.norm2_w, w.norm2_b, eps, normed);
  nn::Tensor hidden = nn::Tensor::empty({n, w.fc1_w.dim(0)});
  nn::linear(normed, w.fc1_w, &w.fc1_b, hidden, {.activation = nn::Activation::kGelu});
  nn::linear(hidden, w.fc2_w, &w.fc2_b, tokens, {.accumulate = true});
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
  nn::Tensor windows = nn::Tensor::empty({n_windows, per_window, c});
  nn::window_partition(tmp, window, windows);
  nn::Tensor qkv = nn::Tensor::empty({n_windows, per_window, 3 * c});
  nn::linear(windows, w.qkv_w, &w.qkv_b, qkv);
  nn::Tensor attended = nn::Tensor::empty({n_windows, per_window, c});
  const int64_t head_dim = c / heads, window_stride = per_window * 3 * c;
  nn::AttentionParams params{.batch = n_windows,
                             .heads = heads,
                             .head_dim = head_dim,
                             .scale = static_cast<float>(1.0 / std::sqrt(double(head_dim)))};
  const float* base = qkv.data();
  nn::attention({base, per_window, window_stride, 3 * c},
                {base + c, per_window, window_stride, 3 * c},
                {base + 2 * c, per_window, window_stride, 3 * c}, params,
                {attended.mutable_data(), per_window * c, c});
  nn::linear(attended, w.proj_w, &w.proj_b, windows);  // proj is per token: window order is fine
  nn::window_reverse(windows, window, x, /*accumulate=*/true);

  depthwise_residual(x, w.dw2_w, w.dw2_b, tmp);
  mlp_residual(x, w, eps, tmp);
}

void channel_block(const nn::Tensor& x, const DavitBlockWeights& w, int64_t groups, float eps) {
  const int64_t b = x.dim(0), n = x.dim(1) * x.dim(2), c = x.dim(3);
  nn::Tensor tmp = nn::Tensor::empty(x.shape());
  depthwise_residual(x, w.dw1_w, w.dw1_b, tmp);

  // Channel attention: d × d attention per group over all N tokens, q·k scaled by N^-0.5 (§4.4).
  nn::Tensor normed = tmp.reshape({b, n, c});
  nn::layer_norm(x, w.norm1_w, w.norm1_b, eps, normed);
  nn::Tensor qkv = nn::Tensor::empty({b, n, 3 * c});
  nn::linear(normed, w.qkv_w, &w.qkv_b, qkv);
  nn::Tensor attended = nn::Tensor::empty({b, n, c});
  nn::channel_attention(qkv, groups, static_cast<float>(1.0 / std::sqrt(double(n))), attended);
  nn::linear(attended, w.proj_w, &w.proj_b, x.reshape({b, n, c}), {.accumulate = true});

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

nn::Tensor VisionEncoder::tower(const nn::Tensor& pixels, std::vector<nn::Tensor>* stages) const {
  if (pixels.rank() != 4 || pixels.dim(1) != 3)
    throw nn::ShapeError("vision tower: pixels " + pixels.shape().to_string() +
                         ", expected [B, 3, H, W]");
  const int64_t b = pixels.dim(0);
  nn::Tensor x;  // the current map [B, H, W, C]
  for (size_t s = 0; s < stages_.size(); ++s) {
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
    for (size_t j = 0; j < st.spatial.size(); ++j) {
      spatial_block(x, st.spatial[j], config_.num_heads[s], config_.window_size, ln_eps_);
      channel_block(x, st.channel[j], config_.num_groups[s], ln_eps_);
    }
    if (stages) stages->push_back(x);
  }
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
