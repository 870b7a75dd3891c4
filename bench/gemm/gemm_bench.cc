// GEMM and memory-bandwidth measurement for choosing the compute library of nn/ (the numbers and
// the decision are in docs/decisions/compute-library.md).
//
// Every product is a PyTorch Linear: Y[M,N] = X[M,K] * W[N,K]^T with W stored [out, in] as in the
// checkpoints, so the weight operand is always "transposed". Candidates:
//   openblas   cblas_sgemm(RowMajor, NoTrans, Trans)
//   dnnl_sgemm dnnl_sgemm('N', 'T')                (oneDNN's BLAS-like entry point)
//   dnnl_mm    matmul primitive, weights described in place as K x N with strides (1, K)
//   dnnl_pack  matmul primitive with weights reordered once into the primitive's preferred layout
//              (what a model would do at load time; the reorder is not timed)
// Threads: OpenBLAS via openblas_set_num_threads, oneDNN (OpenMP runtime) via omp_set_num_threads.
//
// Usage: celeriac_gemm_bench [--threads 1,2] [--min-time-s 0.3] [--only SUBSTRING] [--no-bw]
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "read_rate.h"

namespace {

struct Shape {
  const char* name;
  long m, k, n;
};

// Florence-2-base at 768x768 (spec §3, §15): DaViT linear layers per stage (tokens x C -> 3C, C,
// 4C and back), the BART encoder (S = 585) and one decode step with 3 beams.
const Shape kShapes[] = {
    {"davit0.qkv", 36864, 128, 384}, {"davit0.proj", 36864, 128, 128},
    {"davit0.fc1", 36864, 128, 512}, {"davit0.fc2", 36864, 512, 128},
    {"davit1.qkv", 9216, 256, 768},  {"davit1.fc1", 9216, 256, 1024},
    {"davit1.fc2", 9216, 1024, 256}, {"davit2.qkv", 2304, 512, 1536},
    {"davit2.proj", 2304, 512, 512}, {"davit2.fc1", 2304, 512, 2048},
    {"davit2.fc2", 2304, 2048, 512}, {"davit3.qkv", 576, 1024, 3072},
    {"davit3.fc1", 576, 1024, 4096}, {"davit3.fc2", 576, 4096, 1024},
    {"enc.qkv", 585, 768, 2304},     {"enc.fc1", 585, 768, 3072},
    {"enc.fc2", 585, 3072, 768},     {"dec.q", 3, 768, 768},
    {"dec.fc1", 3, 768, 3072},       {"dec.fc2", 3, 3072, 768},
    {"dec.lm_head", 3, 768, 51289},
};

using celeriac::bench::read_gbs;
using celeriac::bench::time_best;

std::vector<float> random_vector(size_t n, unsigned seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = static_cast<float>((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
  }
  return v;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, scale = 1e-6;
  for (size_t i = 0; i < a.size(); ++i) scale = std::max(scale, std::fabs(double(b[i])));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
  return worst / scale;
}

struct Args {
  std::vector<int> threads{1, 2};
  double min_time_s = 0.3;
  std::string only;
  bool bandwidth = true;
};

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--threads") {
      args.threads.clear();
      std::string list = next();
      for (size_t pos = 0; pos < list.size();) {
        size_t comma = list.find(',', pos);
        if (comma == std::string::npos) comma = list.size();
        args.threads.push_back(std::atoi(list.substr(pos, comma - pos).c_str()));
        pos = comma + 1;
      }
    } else if (a == "--min-time-s") {
      args.min_time_s = std::atof(next().c_str());
    } else if (a == "--only") {
      args.only = next();
    } else if (a == "--no-bw") {
      args.bandwidth = false;
    } else {
      std::fprintf(stderr, "usage: %s [--threads 1,2] [--min-time-s S] [--only STR] [--no-bw]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse_args(argc, argv);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);

  std::printf("%-12s %6s %5s %6s %3s %10s %10s %10s %10s   %s\n", "shape", "M", "K", "N", "thr",
              "openblas", "dnnl_sgemm", "dnnl_mm", "dnnl_pack", "(GFLOP/s; max rel diff vs blas)");
  for (const Shape& s : kShapes) {
    if (!args.only.empty() && std::string(s.name).find(args.only) == std::string::npos) continue;
    std::vector<float> x = random_vector(size_t(s.m) * s.k, 1);
    std::vector<float> w = random_vector(size_t(s.n) * s.k, 2);  // [N, K]
    std::vector<float> y_blas(size_t(s.m) * s.n), y(size_t(s.m) * s.n);
    const double flop = 2.0 * s.m * s.k * s.n;

    using tag = dnnl::memory::format_tag;
    using dt = dnnl::memory::data_type;
    dnnl::memory::desc src_md({s.m, s.k}, dt::f32, tag::ab);
    dnnl::memory::desc w_plain_md({s.k, s.n}, dt::f32, tag::ba);  // W^T viewed in place
    dnnl::memory::desc w_any_md({s.k, s.n}, dt::f32, tag::any);
    dnnl::memory::desc dst_md({s.m, s.n}, dt::f32, tag::ab);
    // oneDNN 2.x API (Debian 12 ships 2.6): an op descriptor, then a primitive descriptor.
    dnnl::matmul mm_plain(
        dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, w_plain_md, dst_md), engine));
    dnnl::matmul::primitive_desc pd_pack(dnnl::matmul::desc(src_md, w_any_md, dst_md), engine);
    dnnl::matmul mm_pack(pd_pack);
    dnnl::memory src_mem(src_md, engine, x.data());
    dnnl::memory w_plain_mem(w_plain_md, engine, w.data());
    dnnl::memory w_pack_mem(pd_pack.weights_desc(), engine);
    dnnl::reorder(w_plain_mem, w_pack_mem).execute(stream, w_plain_mem, w_pack_mem);
    stream.wait();
    dnnl::memory dst_mem(dst_md, engine, y.data());

    for (int threads : args.threads) {
      openblas_set_num_threads(threads);
      omp_set_num_threads(threads);
      double t_blas = time_best(
          [&] {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.m, s.n, s.k, 1.0f, x.data(), s.k,
                        w.data(), s.k, 0.0f, y_blas.data(), s.n);
          },
          args.min_time_s);
      double t_sgemm = time_best(
          [&] {
            dnnl_sgemm('N', 'T', s.m, s.n, s.k, 1.0f, x.data(), s.k, w.data(), s.k, 0.0f, y.data(),
                       s.n);
          },
          args.min_time_s);
      double d_sgemm = max_rel_diff(y, y_blas);
      auto run_mm = [&](dnnl::matmul& mm, dnnl::memory& wm) {
        mm.execute(stream,
                   {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dst_mem}});
        stream.wait();
      };
      double t_mm = time_best([&] { run_mm(mm_plain, w_plain_mem); }, args.min_time_s);
      double d_mm = max_rel_diff(y, y_blas);
      double t_pack = time_best([&] { run_mm(mm_pack, w_pack_mem); }, args.min_time_s);
      double d_pack = max_rel_diff(y, y_blas);
      std::printf("%-12s %6ld %5ld %6ld %3d %10.1f %10.1f %10.1f %10.1f   %.1e %.1e %.1e\n", s.name,
                  s.m, s.k, s.n, threads, flop / t_blas / 1e9, flop / t_sgemm / 1e9,
                  flop / t_mm / 1e9, flop / t_pack / 1e9, d_sgemm, d_mm, d_pack);
      std::fflush(stdout);
    }
  }

  if (args.bandwidth) {
    for (int threads : args.threads)
      // The bound for a decode step, which reads every weight once: 1 GiB, 4 KiB pages.
      std::printf("stream read, %d thread(s): %.1f GB/s\n", threads,
                  read_gbs(size_t(1) << 30, threads, args.min_time_s, false));
  }
  return 0;
}
