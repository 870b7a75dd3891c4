// Times the DaViT vision encoder (src/florence/davit.h) on a full-size checkpoint and reports its
// arithmetic rate, to compare with the GEMM rate celeriac_gemm_bench measures (issue goal: the
// vision encoder at >= 70 % of the GEMM peak). With a reference file from
// scripts/fixtures/make_florence_base_random.py it also prints the relative error of every stage.
//
// Usage: celeriac_vision_bench CHECKPOINT_DIR REFERENCE.safetensors [--threads N] [--runs N]
//   e.g. .cache/florence-2-base-random/native
//   .cache/florence-2-base-random/reference/image0.safetensors
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_clock.h"
#include "florence/davit.h"
#include "florence/reference_error.h"
#include "florence/weights_checkpoint.h"
#include "florence/weights_safetensors.h"
#include "nn/threading.h"

using namespace celeriac;

namespace {

using bench::cpu_s;
using bench::now_s;
using florence::flat_error;
using florence::map_error;

// Linear-layer and convolution multiply-adds of the tower for a given config and image size
// (attention products included), for the GFLOP/s figure: spec §15 counts ~190 GMAC at 768².
double tower_gmac(const florence::VisionConfig& v, int64_t size) {
  double mac = 0;
  int64_t h = size, cin = 3;
  for (size_t s = 0; s < v.dim_embed.size(); ++s) {
    const int64_t k = v.patch_size[s], c = v.dim_embed[s];
    h = (h + 2 * v.patch_padding[s] - k) / v.patch_stride[s] + 1;
    const double n = double(h) * h;
    mac += n * c * cin * k * k;  // patch conv
    const int64_t w = v.window_size, padded = (h + w - 1) / w * w;
    for (int j = 0; j < v.depths[s]; ++j) {
      const double linear = n * (3.0 * c * c + c * c + 8.0 * c * c);  // qkv, proj, fc1+fc2
      mac += 2 * linear + 4 * n * c * 9;                              // 2 halves, 4 dw convs
      mac += 2.0 * padded * padded * w * w * c;                       // window q·k and p·v
      mac += 2.0 * n * c * 32;                                        // channel attention, d = 32
    }
    cin = c;
  }
  return mac / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s CHECKPOINT_DIR REFERENCE.safetensors [--threads N] [--runs N]\n",
                 argv[0]);
    return 2;
  }
  int threads = 1, runs = 2;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
  }
  nn::set_num_threads(threads);
  double t0 = now_s();
  florence::Checkpoint ckpt = florence::Checkpoint::open(argv[1]);
  florence::VisionEncoder vision(ckpt);
  std::printf("checkpoint open + encoder views: %.3f s\n", now_s() - t0);
  florence::TensorSet ref = florence::read_safetensors(argv[2]);
  const florence::TensorView& pv = ref.tensors.at("pixel_values");
  const int64_t size = pv.shape[1];
  nn::Tensor pixels = nn::Tensor::view(reinterpret_cast<const float*>(pv.data), {1, 3, size, size});
  const double gmac = tower_gmac(vision.config(), size);
  std::printf("threads %d, image %ldx%ld, tower %.1f GMAC\n", threads, long(size), long(size),
              gmac);

  std::vector<nn::Tensor> stages;
  nn::Tensor features, tokens;
  for (int r = 0; r < runs; ++r) {
    stages.clear();
    double a = now_s(), a_cpu = cpu_s();
    features = vision.tower(pixels, &stages);
    double b = now_s(), b_cpu = cpu_s();
    tokens = vision.project(features);
    double c = now_s();
    std::printf(
        "run %d: tower %.3f s wall (%.1f GFLOP/s), %.3f s cpu (%.1f GFLOP/s per busy core), "
        "projection %.3f s\n",
        r, b - a, 2 * gmac / (b - a), b_cpu - a_cpu, 2 * gmac / (b_cpu - a_cpu), c - b);
  }
  for (size_t s = 0; s < stages.size(); ++s) {
    auto it = ref.tensors.find("vision_stage" + std::to_string(s));
    if (it == ref.tensors.end()) continue;
    const int64_t hw = stages[s].dim(1) * stages[s].dim(2), ch = stages[s].dim(3);
    std::printf(
        "stage %zu rel error %.2e\n", s,
        map_error(stages[s].data(), reinterpret_cast<const float*>(it->second.data), ch, hw));
  }
  auto it = ref.tensors.find("image_features");
  if (it != ref.tensors.end()) {
    const float* want = reinterpret_cast<const float*>(it->second.data);
    std::printf("visual tokens [%ld, %ld] rel error %.2e\n", long(tokens.dim(1)),
                long(tokens.dim(2)), flat_error(tokens.data(), want, tokens.numel()));
  }
  return 0;
}
