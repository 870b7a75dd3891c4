// Times the non-GEMM nn/ ops at Florence-2-base's real sizes (768×768 image, spec §3/§15), so the
// vision encoder's time can be split into GEMM and the rest. One thread count per run
// (--threads N, default 1); each op's best of a few runs, in ms, with GFLOP/s where it has flops.
//
// Usage: celeriac_nn_ops_bench [--threads N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "nn/attention.h"
#include "nn/conv.h"
#include "nn/elementwise.h"
#include "nn/linear.h"
#include "nn/norm.h"
#include "nn/softmax.h"
#include "nn/tensor.h"
#include "nn/threading.h"
#include "nn/window.h"

using namespace celeriac::nn;

namespace {

double best_ms(const std::function<void()>& fn, int runs = 3) {
  fn();
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(
        best,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

Tensor filled(const Shape& s, float v = 0.01f) {
  Tensor t = Tensor::empty(s);
  float* p = t.mutable_data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = v * static_cast<float>((i * 7919) % 201 - 100);
  return t;
}

void report(const char* name, double ms, double gflop = 0) {
  if (gflop > 0)
    std::printf("%-34s %9.2f ms %8.1f GFLOP/s\n", name, ms, gflop / ms * 1e3);
  else
    std::printf("%-34s %9.2f ms\n", name, ms);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::atoi(argv[i + 1]);
  set_num_threads(threads);
  std::printf("threads: %d\n", threads);

  // Stage 0 of DaViT-base: 192×192 tokens × 128 channels.
  const int64_t h = 192, c = 128, n = h * h;
  Tensor image = filled({1, 3, 768, 768});
  Tensor w0 = filled({c, 3, 7, 7}), b0 = filled({c});
  Tensor tokens = Tensor::empty({1, h, h, c});
  report("patch conv 7x7/4 3->128 (768^2)", best_ms([&] {
           conv2d(image, ImageLayout::kNCHW, w0, &b0, {4, 3, 1}, tokens);
         }),
         2.0 * n * c * 3 * 49 / 1e9);
  Tensor dw = filled({c, 1, 3, 3}), dwb = filled({c});
  Tensor dw_out = Tensor::empty({1, h, h, c});
  report("depthwise 3x3 192^2x128", best_ms([&] {
           conv2d(tokens, ImageLayout::kNHWC, dw, &dwb, {1, 1, c}, dw_out);
         }),
         2.0 * n * c * 9 / 1e9);
  Tensor g = filled({c}, 0.001f), bt = filled({c});
  Tensor ln = Tensor::empty({n, c});
  report("layer_norm 36864x128", best_ms([&] { layer_norm(tokens, g, bt, 1e-5f, ln); }));
  Tensor hidden = filled({n, 4 * c});
  report("gelu 36864x512", best_ms([&] { gelu(hidden); }));
  report("add 36864x128", best_ms([&] { add(tokens, dw_out, tokens); }));

  Tensor windows = Tensor::empty({256, 144, c});
  Tensor map = tokens.reshape({1, h, h, c});
  report("window_partition 192^2x128 w12", best_ms([&] { window_partition(map, 12, windows); }));
  report("window_reverse (+=)", best_ms([&] { window_reverse(windows, 12, map, true); }));

  Tensor qkv = filled({256, 144, 3 * c}, 0.001f);
  Tensor attn_out = Tensor::empty({256, 144, c});
  AttentionParams p{.batch = 256, .heads = 4, .head_dim = 32, .scale = 1.0f / std::sqrt(32.0f)};
  const float* base = qkv.data();
  const int64_t rs = 3 * c, bs = 144 * 3 * c;
  report("window attention 256w x 4h x 144^2", best_ms([&] {
           attention({base, 144, bs, rs}, {base + c, 144, bs, rs}, {base + 2 * c, 144, bs, rs}, p,
                     {attn_out.mutable_data(), 144 * c, c});
         }),
         2.0 * 2 * 256 * 4 * 144.0 * 144 * 32 / 1e9);
  Tensor qkv_all = qkv.reshape({1, n, 3 * c});
  Tensor ch_out = Tensor::empty({1, n, c});
  report("channel attention N=36864 G=4 d=32",
         best_ms([&] { channel_attention(qkv_all, 4, 1.0f / 192, ch_out); }),
         2.0 * 2 * n * 4 * 32.0 * 32 / 1e9);
  Tensor w_fc1 = filled({4 * c, c}, 0.001f), b_fc1 = filled({4 * c});
  report("linear fc1 36864x128->512 +gelu",
         best_ms([&] { linear(ln, w_fc1, &b_fc1, hidden, {.activation = Activation::kGelu}); }),
         2.0 * n * c * 4 * c / 1e9);
  report("linear fc1 36864x128->512", best_ms([&] { linear(ln, w_fc1, &b_fc1, hidden); }),
         2.0 * n * c * 4 * c / 1e9);

  // Stage 3 patch conv 512 -> 1024 at 48^2 -> 24^2.
  Tensor s2 = filled({1, 48, 48, 512}), w3 = filled({1024, 512, 3, 3}, 0.0001f),
         b3 = filled({1024});
  Tensor s3 = Tensor::empty({1, 24, 24, 1024});
  report("patch conv 3x3/2 512->1024 (48^2)", best_ms([&] {
           conv2d(s2, ImageLayout::kNHWC, w3, &b3, {2, 1, 1}, s3);
         }),
         2.0 * 576 * 1024 * 512 * 9 / 1e9);

  // Decoder step GEMMs with 3 beams, as GB/s of weights read.
  for (auto [k, nn] : {std::pair<int64_t, int64_t>{768, 3072}, {3072, 768}, {768, 51289}}) {
    Tensor x = filled({3, k}), w = filled({nn, k}, 0.001f), y = Tensor::empty({3, nn});
    double ms = best_ms([&] { linear(x, w, nullptr, y); }, 10);
    char name[64];
    std::snprintf(name, sizeof name, "linear 3x%ldx%ld (%.1f GB/s)", long(k), long(nn),
                  double(k) * nn * 4 / ms / 1e6);
    report(name, ms, 2.0 * 3 * k * nn / 1e9);
  }

  // Decoder step: log-softmax over the vocabulary for 3 beams, then top-6.
  Tensor logits = filled({3, 51289});
  std::vector<float> vals(6);
  std::vector<int64_t> idx(6);
  report("log_softmax 3x51289 + top6", best_ms([&] {
           log_softmax_rows(logits);
           topk(logits.data(), logits.numel(), 6, vals, idx);
         }));
  return 0;
}
