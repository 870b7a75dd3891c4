// bench/florence, celeriac side: the same request as reference.py on our engine, timed stage by
// stage, printed as the same JSON (run.sh compares the two).
//
// What is timed (threads: nn::set_num_threads, OpenMP's team for oneDNN and our loops):
//   load        florence::Model(dir): config, mmapped weights, tokenizer, preprocessor config
//               (the page cache is warm: run.sh reads the file first, as for PyTorch).
//   preprocess  file bytes -> decode -> resize/normalise -> prompt -> token ids (the processor's
//               work on the PyTorch side).
//   vision      VisionEncoder::tower (DaViT); projection: VisionEncoder::project.
//   encoder     Model::encode_visual: prompt embeddings, positions, the 6 BART encoder layers.
//   decode      Model::start (cross-attention keys/values, cache) + generate() with num_beams 3
//               and min_new_tokens = max_new_tokens = N: everything after the encoder, as on the
//               PyTorch side; per token = decode / steps. step() alone is timed through a
//               forwarding DecoderSession (decoder_forward_per_step_s).
//   decode_paired_with_reads  once more after the runs (and after the peak RSS is read): every
//               step preceded by a plain read of as many bytes as its weights; the median of
//               step / read over the pairs is the step against its bound at that moment.
// One warm-up run (reported as "first"), then --runs runs; the fastest is reported.
//
// Usage: celeriac_bench_florence --model DIR --image FILE [--task '<CAPTION>'] [--new-tokens 64]
//          [--beams 3] [--threads 2] [--runs 2] [--stage-rss] [--bf16-decoder] [--bf16]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_clock.h"
#include "read_rate.h"
#include "florence/davit.h"
#include "florence/generate.h"
#include "florence/model.h"
#include "florence/prompts.h"
#include "florence/tokenizer.h"
#include "image/decode.h"
#include "image/preprocess.h"
#include "nn/threading.h"

using namespace celeriac;
using nlohmann::json;

namespace {

using bench::cpu_s;
using bench::now_s;

long vm_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
      return std::atol(line.c_str() + n + 1);
  return 0;
}

// Forwards to the model's session and times each step(): the decoder's own share of a decode
// step, the rest being the search (log-softmax, processors, top-k, bookkeeping) and reorder().
// A whole decode step is the time from one step() call to the next: forward, search, reorder.
class TimedSession : public florence::DecoderSession {
 public:
  explicit TimedSession(florence::DecoderSession& inner) : inner_(inner) {}
  int rows() const override { return inner_.rows(); }
  int vocab_size() const override { return inner_.vocab_size(); }
  const float* step(const std::vector<int32_t>& tokens) override {
    const double t0 = now_s();
    const float* logits = inner_.step(tokens);
    entries_.push_back(t0);
    steps_.push_back(now_s() - t0);
    return logits;
  }
  void reorder(const std::vector<int>& parents) override { inner_.reorder(parents); }
  const std::vector<double>& steps() const { return steps_; }
  // Whole steps after the first (which alone includes the session's first-use costs): from each
  // step() call to the next one.
  std::vector<double> whole_steps() const {
    std::vector<double> out;
    for (size_t i = 1; i + 1 < entries_.size(); ++i) out.push_back(entries_[i + 1] - entries_[i]);
    return out;
  }

 private:
  florence::DecoderSession& inner_;
  std::vector<double> entries_, steps_;
};

// Decode steps in turns with a plain read of as many bytes as a step's weights (ReadBuffer, at the
// start of each step() call): pairs of (whole step, read) taken within milliseconds of each
// other, so a flip of the machine's read rate hits both. A whole step = step() + search + reorder,
// from the end of one read to the start of the next. The read goes before step(), not after it:
// there it would evict the logits the search is about to read, which in a real decode come
// warm out of lm_head; before step() it evicts only what the step's own 356 MB stream evicts.
class PairedSession : public florence::DecoderSession {
 public:
  using PhaseTime = florence::DecoderSession::PhaseTime;
  PairedSession(florence::DecoderSession& inner, bench::ReadBuffer& buffer, int threads)
      : inner_(inner), buffer_(buffer), threads_(threads) {}
  int rows() const override { return inner_.rows(); }
  int vocab_size() const override { return inner_.vocab_size(); }
  const float* step(const std::vector<int32_t>& tokens) override {
    const double entry = now_s();
    // The first step alone includes first-use costs: pairs from the second step on.
    if (++steps_ > 2) {
      const double step_s = entry - previous_start_;
      double forward_s = 0;
      for (const PhaseTime& p : previous_phases_) forward_s += p.seconds;
      std::vector<PhaseTime> phases = previous_phases_;
      phases.push_back({"search", step_s - forward_s});
      pairs_.push_back({step_s, previous_read_, std::move(phases)});
    }
    previous_read_ = buffer_.read_once_s(threads_);
    previous_start_ = now_s();
    const float* logits = inner_.step(tokens);
    previous_phases_ = phase_deltas();
    return logits;
  }
  void reorder(const std::vector<int>& parents) override { inner_.reorder(parents); }
  // A whole step, the read just before it, and the step's parts: the decoder's phases, then
  // "search" (everything outside step(): search, reorder).
  struct Pair {
    double step_s, read_s;
    std::vector<PhaseTime> phases;
  };
  const std::vector<Pair>& pairs() const { return pairs_; }

 private:
  // This step's seconds per decoder phase (phase_times() is cumulative).
  std::vector<PhaseTime> phase_deltas() {
    std::vector<PhaseTime> now = inner_.phase_times(), delta = now;
    for (size_t i = 0; i < delta.size() && i < totals_.size(); ++i)
      delta[i].seconds -= totals_[i].seconds;
    totals_ = std::move(now);
    return delta;
  }

  florence::DecoderSession& inner_;
  bench::ReadBuffer& buffer_;
  const int threads_;
  std::vector<PhaseTime> totals_, previous_phases_;
  double previous_start_ = 0, previous_read_ = 0;
  int steps_ = 0;
  std::vector<Pair> pairs_;
};

// Bytes of fp32 weights one decode step reads: per layer self-attention q/k/v/out,
// cross-attention q/out, fc1, fc2; then lm_head (florence2.md section 9; compare.py counts the
// same from config.json).
size_t decode_weight_bytes(const florence::Model& model) {
  const auto& t = model.config().text;
  const size_t d = t.d_model, f = t.decoder_ffn_dim;
  return 4 * (t.decoder_layers * (6 * d * d + 2 * d * f) + size_t(model.vocab_size()) * d);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[(v.size() - 1) / 2];
}

struct Args {
  std::string model, image, task = "<CAPTION>";
  int new_tokens = 64, beams = 3, threads = 2, runs = 2;
  bool stage_rss = false;
  bool bf16_decoder = false;
  bool bf16_encoders = false;  // --bf16: the decoder's bf16 weights and bf16 encoder GEMMs
  bool stored_vision = false;  // --stored-vision-weights: no reordered copies (A/B of the option)
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc && k != "--stage-rss" && k != "--bf16-decoder" && k != "--bf16" &&
        k != "--stored-vision-weights")
      k = "?";
    if (k == "--model")
      a.model = argv[++i];
    else if (k == "--image")
      a.image = argv[++i];
    else if (k == "--task")
      a.task = argv[++i];
    else if (k == "--new-tokens")
      a.new_tokens = std::atoi(argv[++i]);
    else if (k == "--beams")
      a.beams = std::atoi(argv[++i]);
    else if (k == "--threads")
      a.threads = std::atoi(argv[++i]);
    else if (k == "--runs")
      a.runs = std::atoi(argv[++i]);
    else if (argv[i] == std::string("--stage-rss"))
      a.stage_rss = true;
    else if (argv[i] == std::string("--bf16-decoder"))
      a.bf16_decoder = true;
    else if (argv[i] == std::string("--bf16"))
      a.bf16_decoder = a.bf16_encoders = true;
    else if (argv[i] == std::string("--stored-vision-weights"))
      a.stored_vision = true;
    else {
      std::fprintf(stderr,
                   "usage: %s --model DIR --image FILE [--task T] [--new-tokens N] [--beams K] "
                   "[--threads N] [--runs N] [--stage-rss] [--bf16-decoder] [--bf16] "
                   "[--stored-vision-weights]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  if (a.model.empty() || a.image.empty()) parse_args(1, argv);  // prints usage
  return a;
}

struct Run {
  json times;
  json stage_rss;  // --stage-rss: per stage, RSS at its end and its own peak
  std::vector<int32_t> prompt_ids, token_ids;
};

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  nn::set_num_threads(args.threads);

  double t0 = now_s();
  florence::Model model(args.model, {.bf16_decoder = args.bf16_decoder,
                                     .bf16_encoders = args.bf16_encoders,
                                     .reordered_vision_weights = !args.stored_vision});
  const double load_s = now_s() - t0;
  const long rss_after_load_kib = vm_kib("VmRSS");
  if (!model.tokenizer()) {
    std::fprintf(stderr, "%s: no tokenizer files\n", args.model.c_str());
    return 1;
  }
  florence::GenerationConfig config = florence::GenerationConfig::from_model_dir(args.model);
  config.num_beams = args.beams;
  config.max_new_tokens = args.new_tokens;
  config.min_new_tokens = args.new_tokens;  // a fixed amount of work, as on the PyTorch side

  std::ifstream file(args.image, std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(file)),
                                   std::istreambuf_iterator<char>());

  // Writing 5 to clear_refs resets VmHWM to the current RSS, so the next reading is the peak of
  // the stage in between (Linux >= 4.0). Off by default: it clears the whole run's peak.
  auto stage_mark = [&](Run& r, const char* stage) {
    if (!args.stage_rss) return;
    if (*stage)
      r.stage_rss[stage] = {{"rss_mib", vm_kib("VmRSS") / 1024.0},
                            {"peak_mib", vm_kib("VmHWM") / 1024.0}};
    std::ofstream("/proc/self/clear_refs") << "5";
  };

  long peak_kib = 0;  // VmHWM before each read-rate measurement (see below)
  auto one_run = [&]() {
    Run r;
    if (args.stage_rss) r.stage_rss["before_mib"] = vm_kib("VmRSS") / 1024.0;
    stage_mark(r, "");
    const double a = now_s(), a_cpu = cpu_s();
    image::DecodedImage decoded = image::decode_image(bytes);
    image::PreprocessedImage pre = image::preprocess(decoded, model.preprocess_options());
    r.prompt_ids = model.tokenizer()->encode(florence::construct_prompt(args.task));
    const double b = now_s(), b_cpu = cpu_s();
    stage_mark(r, "preprocess");
    nn::Tensor pixels = nn::Tensor::view(pre.chw.data(), {1, 3, pre.height, pre.width});
    nn::Tensor features = model.vision().tower(pixels);
    const double c = now_s(), c_cpu = cpu_s();
    stage_mark(r, "vision");
    nn::Tensor visual = model.vision().project(features);
    const double d = now_s(), d_cpu = cpu_s();
    stage_mark(r, "projection");
    florence::EncodedBatch encoded = model.encode_visual(visual, {r.prompt_ids});
    const double e = now_s(), e_cpu = cpu_s();
    stage_mark(r, "encoder");
    auto session = model.start(encoded, config.num_beams);
    const double e2 = now_s();
    TimedSession timed(*session);
    florence::GenerationResult out = florence::generate(timed, config);
    const double f = now_s(), f_cpu = cpu_s();
    stage_mark(r, "decode");
    // The read rate right beside this decode (a 128 MiB buffer, 4x the L3, freed again): the
    // bound its steps are judged against, taken under the same neighbours. The peak RSS is kept
    // before it and VmHWM reset after it, so the buffer never counts as the model's memory.
    double read = 0.0;
    if (!args.stage_rss) {
      peak_kib = std::max(peak_kib, vm_kib("VmHWM"));
      read = bench::read_gbs(size_t{128} << 20, args.threads, 0.3);
      std::ofstream("/proc/self/clear_refs") << "5";
    }
    r.token_ids = out.sequences.at(0);
    std::vector<double> steps = timed.steps();
    const size_t n = steps.size();
    double step_sum = 0;
    for (double s : steps) step_sum += s;
    std::vector<double> rest(steps.begin() + (n ? 1 : 0), steps.end());
    r.times = {
        {"preprocess_s", b - a},
        {"vision_s", c - b},
        {"projection_s", d - c},
        {"encoder_s", e - d},
        {"other_before_decode_s", 0.0},
        {"decode_s", f - e},
        {"decode_steps", n},
        {"decode_per_token_s", (f - e) / double(std::max<size_t>(1, n))},
        {"decoder_forward_per_step_s", step_sum / double(std::max<size_t>(1, n))},
        {"decoder_first_step_s", n ? steps[0] : 0.0},
        {"decoder_median_step_s", median(rest)},
        // Once per request, before the first step: the cross-attention keys/values.
        {"decoder_start_s", e2 - e},
        // The steady decode step: forward + search + reorder, median over steps 2..n-1.
        {"decode_step_median_s", median(timed.whole_steps())},
        {"read_gbs_beside_decode", read},
        {"generate_s", f - b},
        {"total_s", f - a},
        {"vision_cpu_s", c_cpu - b_cpu},
        {"encoder_cpu_s", e_cpu - d_cpu},
        {"decode_cpu_s", f_cpu - e_cpu},
        {"total_cpu_s", f_cpu - a_cpu},
    };
    return r;
  };

  // The paired decode (after everything else, so that the timed runs above stay as they were).
  auto paired_decode = [&]() {
    image::DecodedImage decoded = image::decode_image(bytes);
    image::PreprocessedImage pre = image::preprocess(decoded, model.preprocess_options());
    const std::vector<int32_t> prompt = model.tokenizer()->encode(florence::construct_prompt(args.task));
    nn::Tensor pixels = nn::Tensor::view(pre.chw.data(), {1, 3, pre.height, pre.width});
    florence::EncodedBatch encoded = model.encode(pixels, {prompt});
    const size_t weight_bytes = decode_weight_bytes(model);
    bench::ReadBuffer buffer(weight_bytes, args.threads);  // rounded up to whole 2 MiB pages
    // The time the step's own bytes take at a read's rate: the bound of that step.
    const double bound_share = double(weight_bytes) / double(std::max<size_t>(1, buffer.bytes()));
    std::vector<PairedSession::Pair> pairs;
    for (int r = 0; r < 3; ++r) {  // ~200 pairs: a few seconds, so both read states tend to occur
      auto session = model.start(encoded, config.num_beams);
      PairedSession paired(*session, buffer, args.threads);
      florence::generate(paired, config);
      pairs.insert(pairs.end(), paired.pairs().begin(), paired.pairs().end());
    }
    // All pairs, and apart by the read's rate: above or below 45 GB/s (the two states).
    auto summary = [&](int state) {
      std::vector<double> ratios, steps, reads;
      std::vector<std::vector<double>> phases;  // per phase, its time in each step
      for (const PairedSession::Pair& p : pairs) {
        const bool fast = buffer.bytes() / p.read_s / 1e9 > 45.0;
        if (state >= 0 && fast != (state == 1)) continue;
        ratios.push_back(p.step_s / (p.read_s * bound_share));
        steps.push_back(p.step_s);
        reads.push_back(p.read_s);
        phases.resize(p.phases.size());
        for (size_t i = 0; i < p.phases.size(); ++i) phases[i].push_back(p.phases[i].seconds);
      }
      const double read = median(reads);
      json phase_ms = json::object();  // medians: they need not add up to the step's median
      for (size_t i = 0; i < phases.size(); ++i)
        phase_ms[pairs.front().phases[i].name] = 1e3 * median(phases[i]);
      return json{{"pairs", ratios.size()},
                  {"step_to_read_median", median(ratios)},
                  {"step_median_s", median(steps)},
                  {"read_median_s", read},
                  {"read_gbs_median", read > 0 ? buffer.bytes() / read / 1e9 : 0.0},
                  {"phase_median_ms", phase_ms}};
    };
    json out = summary(-1);
    out["weight_bytes"] = weight_bytes;
    out["read_above_45_gbs"] = summary(1);
    out["read_below_45_gbs"] = summary(0);
    return out;
  };

  Run first = one_run();
  std::vector<Run> runs;
  for (int i = 0; i < args.runs; ++i) runs.push_back(one_run());
  const Run* best = &first;
  if (!runs.empty()) {
    best = &runs[0];
    for (const Run& r : runs)
      if (r.times["total_s"].get<double>() < best->times["total_s"].get<double>()) best = &r;
  }
  json totals = json::array();
  for (const Run& r : runs) {
    totals.push_back(r.times["total_s"]);
    if (r.token_ids != first.token_ids) {
      std::fprintf(stderr, "generate is not deterministic\n");
      return 1;
    }
  }
  // The peak RSS is read first: the paired decode's read buffer is not the model's memory.
  const long peak_rss_kib = std::max(peak_kib, vm_kib("VmHWM"));
  const json paired = args.stage_rss ? json(nullptr) : paired_decode();
  json result = {
      {"engine", "celeriac"},
      {"decode_paired_with_reads", paired},
      {"threads", args.threads},
      {"bf16_decoder", args.bf16_decoder},
      {"bf16_encoders", model.bf16_encoders()},
      {"task", args.task},
      {"image", args.image},
      {"beams", args.beams},
      {"new_tokens_requested", args.new_tokens},
      {"new_tokens", best->token_ids.empty() ? 0 : int(best->token_ids.size()) - 1},
      {"import_s", 0.0},
      {"load_s", load_s},
      {"rss_after_load_mib", rss_after_load_kib / 1024.0},
      {"peak_rss_mib",
       args.stage_rss ? json(nullptr) : json(peak_rss_kib / 1024.0)},
      {"first", first.times},
      {"best", best->times},
      {"first_stage_rss", first.stage_rss},
      {"best_stage_rss", best->stage_rss},
      {"run_totals_s", totals},
      {"prompt_ids", best->prompt_ids},
      {"token_ids", best->token_ids},
  };
  std::printf("%s\n", result.dump(1).c_str());
  return 0;
}
