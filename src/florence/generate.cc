// Greedy and beam search as transformers 5.23.0's generate() runs them (generation/utils.py
// _sample and _beam_search, logits_process.py). Every score is a float32 computed in the order
// PyTorch computes it: the beam search's -1e9 masks are added, not branched on, because whether
// "score - 1e9" rounds to exactly -1e9 decides ties the reference resolves the same way.
#include "florence/generate.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <span>
#include <tuple>
#include <utility>

#include "nn/softmax.h"
#include "nn/threading.h"

namespace celeriac::florence {
namespace {

using json = nlohmann::json;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// The beam search's "impossible" score: initial scores of beams 1..K-1, empty finished slots,
// and the mask added to candidates that may not be chosen.
constexpr float kMinusBillion = -1.0e9f;
// The decoder prompt is the start token alone (transformers' decoder_prompt_len).
constexpr int kPromptLength = 1;

// ---------------------------------------------------------------------------------------------
// Selection

// Is any of x[0, n) above t? NaN never is, as in the scalar test it stands for.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) bool any_above(
    const float* x, int n, float t) {
  int any = 0;
#pragma omp simd reduction(| : any)
  for (int i = 0; i < n; ++i) any |= x[i] > t;
  return any != 0;
}

// The k largest of values[0, n), best first, with torch.topk's choice among equal values. Exact
// ties are common in long beam searches (cumulative scores near -1500 have an ulp of 1.2e-4) and
// the reference breaks them the way PyTorch's CPU kernel does: a std::partial_sort of (value,
// index) pairs when k * 64 <= n, else std::nth_element at k - 1 and a std::sort of the first
// k - 1, ordering by value alone. The same libstdc++ algorithms on the same input give the same
// order (checked against torch.topk on tie-heavy arrays in both regimes).
class TorchTopK {
 public:
  const std::vector<int>& operator()(const float* values, int n, int k) {
    const bool heap = static_cast<int64_t>(k) * 64 <= n;  // torch's choice of algorithm
    if (!heap || !entering(values, n, k)) {
      queue_.resize(n);
      for (int i = 0; i < n; ++i) queue_[i] = {values[i], i};
    }
    auto larger = [](const Entry& a, const Entry& b) { return a.first > b.first; };
    const auto first = queue_.begin(), last = queue_.end();
    if (heap) {
      std::partial_sort(first, first + k, last, larger);
    } else {
      std::nth_element(first, first + (k - 1), last, larger);
      std::sort(first, first + (k - 1), larger);
    }
    best_.resize(k);
    for (int j = 0; j < k; ++j) best_[j] = static_cast<int>(queue_[j].second);
    return best_;
  }

 private:
  using Entry = std::pair<float, int64_t>;

  // partial_sort keeps a heap of the k best so far and lets in only a value larger than the
  // heap's smallest, i.e. than the k-th largest value before it; the others are compared and
  // left alone. So sorting just the first k and the values that get in, in their order, makes
  // the same heap and the same order, ties included, without copying all n (150k per step at 3
  // beams). Fills queue_ with them; false (nothing done) when the first k hold a NaN.
  bool entering(const float* values, int n, int k) {
    kth_.assign(values, values + k);  // the k largest so far, ascending
    for (float v : kth_)
      if (std::isnan(v)) return false;
    std::sort(kth_.begin(), kth_.end());
    queue_.clear();
    for (int i = 0; i < k; ++i) queue_.push_back({values[i], i});
    // Nearly every value stays out: whole chunks are tested at once, one value at a time only in
    // a chunk where something gets in (the threshold moves only then).
    constexpr int kChunk = 64;
    for (int i = k; i < n;) {
      const int end = std::min(n, i + kChunk);
      if (!any_above(values + i, end - i, kth_[0])) {
        i = end;
        continue;
      }
      for (; i < end; ++i) {
        const float v = values[i];
        if (!(v > kth_[0])) continue;
        queue_.push_back({v, i});
        kth_[0] = v;  // the smallest leaves; v moves up to its place
        for (size_t j = 1; j < kth_.size() && kth_[j] < kth_[j - 1]; ++j)
          std::swap(kth_[j], kth_[j - 1]);
      }
    }
    return true;
  }

  std::vector<Entry> queue_;
  std::vector<float> kth_;
  std::vector<int> best_;
};

// torch.argmax: the first index of the maximum.
int argmax(const float* values, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (values[i] > values[best]) best = i;
  }
  return best;
}

// Beam candidates: log_softmax in double, rounded once (within an ulp or two of PyTorch's float
// kernel), plus the beam's running score as PyTorch's float add; the row's max and log Σ exp come
// from its nn::SoftmaxPiece's. Element-wise and exact in every lane (no fast-math here), so
// vectorised through `omp simd`.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void beam_candidates(
    const float* logits, float* out, int lo, int hi, float max, double log_sum,
    float running_score) {
#pragma omp simd
  for (int i = lo; i < hi; ++i) {
    const float log_prob = static_cast<float>(static_cast<double>(logits[i]) - max - log_sum);
    out[i] = log_prob + running_score;
  }
}

// What PyTorch divides a float32 tensor by when Python hands it `length ** length_penalty`:
// the double power, rounded to float32.
float length_divisor(int length, double length_penalty) {
  return static_cast<float>(std::pow(static_cast<double>(length), length_penalty));
}

// ---------------------------------------------------------------------------------------------
// Logits processors, in the order transformers' _get_logits_processor builds them: no-repeat
// n-gram, min length (min_new_tokens folds into it), forced BOS, forced EOS. Greedy applies them
// to raw logits, beam search to log-probabilities.

struct Processors {
  int no_repeat_ngram_size = 0;
  int min_length = 0;
  int max_length = 0;
  std::vector<int32_t> eos;
  std::optional<int32_t> forced_bos;
  std::vector<int32_t> forced_eos;

  void apply(const std::vector<int32_t>& seq, float* scores, int vocab) const {
    apply(seq, scores, 0, vocab);
  }

  // The same on scores[lo, hi) of a row, the rest left alone (rows are processed in pieces).
  // A forced token's score becomes `forced`: 0 on logits or log-probabilities, the running score
  // on beam candidates (log-prob + running score; a banned one's -inf stays -inf).
  void apply(const std::vector<int32_t>& seq, float* scores, int lo, int hi,
             float forced = 0.0f) const {
    auto in = [&](int32_t id) { return id >= lo && id < hi; };
    const int len = static_cast<int>(seq.size());
    if (no_repeat_ngram_size > 0 && len >= no_repeat_ngram_size) {
      // Every earlier n-gram that starts with the last n-1 tokens bans its own last token.
      const int n = no_repeat_ngram_size;
      const int32_t* prefix = seq.data() + len - (n - 1);
      for (int start = 0; start + n <= len; ++start) {
        if (std::equal(prefix, prefix + n - 1, seq.data() + start)) {
          const int32_t banned = seq[start + n - 1];
          if (in(banned)) scores[banned] = kNegInf;
        }
      }
    }
    if (len < min_length) {
      for (int32_t id : eos) {
        if (in(id)) scores[id] = kNegInf;
      }
    }
    auto force = [&](const std::vector<int32_t>& ids) {
      std::fill(scores + lo, scores + hi, kNegInf);
      for (int32_t id : ids) {
        if (in(id)) scores[id] = forced;
      }
    };
    if (forced_bos && len == 1) force({*forced_bos});
    if (!forced_eos.empty() && len == max_length - 1) force(forced_eos);
  }
};

bool contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// ---------------------------------------------------------------------------------------------
// Greedy (transformers' _sample with do_sample=False)

GenerationResult greedy(DecoderSession& session, const GenerationConfig& config,
                        const Processors& processors, int32_t start, int max_length) {
  const int rows = session.rows();
  const int vocab = session.vocab_size();
  const std::vector<int32_t>& eos = config.eos_token_ids;
  // Finished rows keep receiving pad (eos[0] when pad is unset) so the batch stays rectangular.
  const int32_t pad = config.pad_token_id.value_or(eos.empty() ? 0 : eos[0]);
  std::vector<std::vector<int32_t>> seqs(rows, std::vector<int32_t>{start});
  std::vector<char> unfinished(rows, 1);
  std::vector<int> lengths(rows, 0);
  std::vector<float> scores(vocab);
  std::vector<int32_t> next(rows, start);
  const float* logits = session.step(next);
  while (true) {
    for (int r = 0; r < rows; ++r) {
      std::copy(logits + static_cast<size_t>(r) * vocab,
                logits + static_cast<size_t>(r + 1) * vocab, scores.begin());
      processors.apply(seqs[r], scores.data(), vocab);
      int32_t token = argmax(scores.data(), vocab);
      if (!eos.empty() && !unfinished[r]) token = pad;
      next[r] = token;
      seqs[r].push_back(token);
      if (unfinished[r]) ++lengths[r];
    }
    bool any_unfinished = false;
    for (int r = 0; r < rows; ++r) {
      const bool stop = static_cast<int>(seqs[r].size()) >= max_length || contains(eos, next[r]);
      unfinished[r] = unfinished[r] && !stop;
      any_unfinished = any_unfinished || unfinished[r];
    }
    if (!any_unfinished) break;
    logits = session.step(next);
  }
  return GenerationResult{std::move(seqs), {}, std::move(lengths)};
}

// ---------------------------------------------------------------------------------------------
// Beam search (transformers' vectorised _beam_search, one input at a time)

struct Hypothesis {
  std::vector<int32_t> tokens;
  float score = kMinusBillion;
  bool finished = false;
};

struct BeamInput {
  std::vector<std::vector<int32_t>> running;  // K live sequences, best first
  std::vector<float> running_scores;          // their summed log-probs (masks included)
  std::vector<Hypothesis> finished;           // K slots, best first; unfinished = placeholder
  std::vector<char> hits;                     // last step: candidate j ended (EOS / max length)
  bool improvable = true;                     // is_early_stop_heuristic_unsatisfied
};

class BeamSearch {
 public:
  BeamSearch(const GenerationConfig& config, const Processors& processors, int inputs, int vocab,
             int32_t start, int max_length)
      : config_(config),
        processors_(processors),
        beams_(config.num_beams),
        // Enough candidates that num_beams survive even if every beam's best is an EOS.
        keep_(std::max<int>(2, 1 + static_cast<int>(config.eos_token_ids.size())) *
              config.num_beams),
        vocab_(vocab),
        max_length_(max_length),
        items_(inputs) {
    for (BeamInput& item : items_) {
      item.running.assign(beams_, {start});
      // Only beam 0 is live at first: identical beams must not fill the candidates.
      item.running_scores.assign(beams_, kMinusBillion);
      item.running_scores[0] = 0.0f;
      item.finished.assign(beams_, Hypothesis{{start}, kMinusBillion, false});
      item.hits.assign(keep_, 0);
    }
    candidates_.resize(static_cast<size_t>(beams_) * vocab_);
  }

  // One step for every input from the logits of all rows; returns false when the search is over.
  // parents receives, per row, the old row each new row continues.
  bool advance(const float* logits, std::vector<int>& parents) {
    const int cur_len = cur_len_;
    for (size_t b = 0; b < items_.size(); ++b) {
      advance_input(items_[b], logits + b * beams_ * static_cast<size_t>(vocab_), cur_len,
                    parents.data() + b * beams_, static_cast<int>(b) * beams_);
    }
    cur_len_ = cur_len + 1;
    for (BeamInput& item : items_) update_improvable(item);
    bool improvement_possible = false, all_full = true, all_hit = true;
    for (const BeamInput& item : items_) {
      improvement_possible = improvement_possible || item.improvable;
      for (const Hypothesis& h : item.finished) all_full = all_full && h.finished;
      for (char hit : item.hits) all_hit = all_hit && hit;
    }
    const bool exists_open_beam = !(all_full && config_.early_stopping == EarlyStopping::kTrue);
    return improvement_possible && exists_open_beam && !all_hit;
  }

  std::vector<int32_t> last_tokens() const {
    std::vector<int32_t> out;
    for (const BeamInput& item : items_) {
      for (const auto& seq : item.running) out.push_back(seq.back());
    }
    return out;
  }

  GenerationResult result() const {
    GenerationResult out;
    const int prompt_length = kPromptLength;
    int longest = 0;
    for (const BeamInput& item : items_) {
      const int generated = static_cast<int>(item.finished[0].tokens.size()) - prompt_length;
      out.lengths.push_back(generated);
      longest = std::max(longest, generated);
    }
    // transformers fills with `pad_token_id or eos_token_id[0]`: a pad id of 0 counts as unset.
    const auto& eos = config_.eos_token_ids;
    const int32_t pad = config_.pad_token_id.value_or(eos.empty() ? 0 : eos[0]);
    const int32_t fill = eos.empty() ? -1 : (pad != 0 ? pad : eos[0]);
    for (const BeamInput& item : items_) {
      std::vector<int32_t> seq = item.finished[0].tokens;
      seq.resize(prompt_length + longest, fill);
      out.sequences.push_back(std::move(seq));
      out.scores.push_back(item.finished[0].score);
    }
    return out;
  }

 private:
  void advance_input(BeamInput& item, const float* logits, int cur_len, int* parents,
                     int row_offset) {
    // b. log-probs, processors, plus the running scores, spread over the intra-op threads (which
    // otherwise wait here for the next step) in half rows: 3 beams keep 2 threads equally busy.
    constexpr int kHalves = 2;
    auto half = [&](int64_t u) {
      const int k = static_cast<int>(u / kHalves), h = static_cast<int>(u % kHalves);
      return std::tuple{k, vocab_ * h / kHalves, vocab_ * (h + 1) / kHalves};
    };
    parts_.resize(static_cast<size_t>(beams_) * kHalves);
    nn::parallel_for(beams_ * kHalves, 1, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const auto [k, lo, hi] = half(u);
        parts_[u] = nn::softmax_piece(logits + static_cast<size_t>(k) * vocab_ + lo, hi - lo);
      }
    });
    totals_.resize(beams_);
    for (int k = 0; k < beams_; ++k)
      totals_[k] = nn::softmax_total(std::span(parts_).subspan(k * kHalves, kHalves));
    nn::parallel_for(beams_ * kHalves, 1, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const auto [k, lo, hi] = half(u);
        float* cand = candidates_.data() + static_cast<size_t>(k) * vocab_;
        beam_candidates(logits + static_cast<size_t>(k) * vocab_, cand, lo, hi, totals_[k].max,
                        totals_[k].log_sum, item.running_scores[k]);
        processors_.apply(item.running[k], cand, lo, hi, item.running_scores[k]);
      }
    });
    // c. The best keep_ continuations over all beams.
    const std::vector<int> top = topk_(candidates_.data(), beams_ * vocab_, keep_);
    std::vector<float> top_scores(keep_);
    std::vector<int> top_parent(keep_);
    std::vector<int32_t> top_token(keep_);
    for (int j = 0; j < keep_; ++j) {
      top_scores[j] = candidates_[top[j]];
      top_parent[j] = top[j] / vocab_;
      top_token[j] = top[j] % vocab_;
      // d. Stopping criteria on the extended sequence: max length, then EOS.
      item.hits[j] = cur_len + 1 >= max_length_ || contains(config_.eos_token_ids, top_token[j]);
    }
    auto extended = [&](int j) {
      std::vector<int32_t> seq = item.running[top_parent[j]];
      seq.push_back(top_token[j]);
      return seq;
    };
    // e. The next running beams: the best candidates that did not just end.
    std::vector<float> live_scores(keep_);
    for (int j = 0; j < keep_; ++j) {
      live_scores[j] = item.hits[j] ? top_scores[j] + kMinusBillion : top_scores[j];
    }
    const std::vector<int> live = topk_(live_scores.data(), keep_, beams_);
    // f. Finished hypotheses: only candidates ranked within the first num_beams may enter, with
    // the length-normalised score; the masks keep the others (and a closed input) out.
    const float divisor = length_divisor(cur_len + 1 - kPromptLength, config_.length_penalty);
    bool slots_full = config_.early_stopping == EarlyStopping::kTrue;
    for (const Hypothesis& h : item.finished) slots_full = slots_full && h.finished;
    std::vector<float> merged_scores;
    for (const Hypothesis& h : item.finished) merged_scores.push_back(h.score);
    std::vector<char> just_finished(keep_);
    for (int j = 0; j < keep_; ++j) {
      float score = top_scores[j] / divisor;
      if (slots_full) score += kMinusBillion;
      if (!item.improvable) score += kMinusBillion;
      just_finished[j] = item.hits[j] && j < beams_;
      if (!just_finished[j]) score += kMinusBillion;
      merged_scores.push_back(score);
    }
    const std::vector<int> kept = topk_(merged_scores.data(), beams_ + keep_, beams_);
    std::vector<Hypothesis> finished;
    for (int m : kept) {
      if (m < beams_) {
        finished.push_back(item.finished[m]);
      } else {
        const int j = m - beams_;
        finished.push_back(Hypothesis{extended(j), merged_scores[m], just_finished[j] != 0});
      }
    }
    std::vector<std::vector<int32_t>> running;
    std::vector<float> running_scores;
    for (int k = 0; k < beams_; ++k) {
      const int j = live[k];
      running.push_back(extended(j));
      running_scores.push_back(live_scores[j]);
      parents[k] = row_offset + top_parent[j];
    }
    item.running = std::move(running);
    item.running_scores = std::move(running_scores);
    item.finished = std::move(finished);
  }

  // Can the best running beam still beat the worst finished hypothesis? Sticky once false.
  void update_improvable(BeamInput& item) const {
    const double penalty = config_.length_penalty;
    const int prompt_length = kPromptLength;
    const int length = config_.early_stopping == EarlyStopping::kNever && penalty > 0.0
                           ? max_length_ - prompt_length
                           : cur_len_ - prompt_length;
    const float best_possible = item.running_scores[0] / length_divisor(length, penalty);
    float worst = item.finished[0].score;
    for (const Hypothesis& h : item.finished) worst = std::min(worst, h.score);
    bool any = false;
    for (const Hypothesis& h : item.finished) {
      any = any || best_possible > (h.finished ? worst : kMinusBillion);
    }
    item.improvable = item.improvable && any;
  }

  const GenerationConfig& config_;
  const Processors& processors_;
  const int beams_;
  const int keep_;
  const int vocab_;
  const int max_length_;
  int cur_len_ = 1;
  std::vector<BeamInput> items_;
  std::vector<float> candidates_;
  std::vector<nn::SoftmaxPiece> parts_;   // per half row
  std::vector<nn::SoftmaxTotal> totals_;  // per beam
  TorchTopK topk_;
};

GenerationResult beam_search(DecoderSession& session, const GenerationConfig& config,
                             const Processors& processors, int32_t start, int max_length) {
  const int rows = session.rows();
  BeamSearch search(config, processors, rows / config.num_beams, session.vocab_size(), start,
                    max_length);
  std::vector<int> parents(rows);
  const float* logits = session.step(std::vector<int32_t>(rows, start));
  while (search.advance(logits, parents)) {
    bool identity = true;
    for (int r = 0; r < rows; ++r) identity = identity && parents[r] == r;
    if (!identity) session.reorder(parents);
    logits = session.step(search.last_tokens());
  }
  return search.result();
}

// ---------------------------------------------------------------------------------------------
// Configuration

[[noreturn]] void config_error(const std::string& what) { throw GenerationConfigError(what); }

int as_int(const json& v, const char* key) {
  if (!v.is_number_integer()) config_error(std::string(key) + " must be an integer");
  const int64_t x = v.get<int64_t>();
  if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max()) {
    config_error(std::string(key) + " is out of range");
  }
  return static_cast<int>(x);
}

std::vector<int32_t> as_ids(const json& v, const char* key) {
  std::vector<int32_t> ids;
  if (v.is_array()) {
    for (const json& x : v) ids.push_back(as_int(x, key));
  } else {
    ids.push_back(as_int(v, key));
  }
  return ids;
}

EarlyStopping as_early_stopping(const json& v) {
  if (v.is_boolean()) return v.get<bool>() ? EarlyStopping::kTrue : EarlyStopping::kFalse;
  if (v.is_string() && v.get<std::string>() == "never") return EarlyStopping::kNever;
  config_error("early_stopping must be true, false or \"never\"");
}

// Settings that change the search in ways not implemented here, with the value that is harmless.
bool is_harmless(const std::string& key, const json& v) {
  if (v.is_null()) return true;
  if (key == "do_sample" || key == "renormalize_logits" || key == "token_healing") {
    return v.is_boolean() && !v.get<bool>();
  }
  if (key == "num_return_sequences" || key == "num_beam_groups") {
    return v.is_number() && v.get<double>() == 1.0;
  }
  if (key == "repetition_penalty" || key == "encoder_repetition_penalty" ||
      key == "guidance_scale") {
    return v.is_number() && v.get<double>() == 1.0;
  }
  if (key == "encoder_no_repeat_ngram_size" || key == "diversity_penalty" ||
      key == "penalty_alpha") {
    return v.is_number() && v.get<double>() == 0.0;
  }
  if (key == "bad_words_ids" || key == "suppress_tokens" || key == "begin_suppress_tokens" ||
      key == "forced_decoder_ids" || key == "sequence_bias" || key == "stop_strings") {
    return v.empty();
  }
  return false;  // exponential_decay_length_penalty, max_time: only null is harmless
}

constexpr const char* kRefused[] = {"do_sample",
                                    "renormalize_logits",
                                    "token_healing",
                                    "num_return_sequences",
                                    "num_beam_groups",
                                    "repetition_penalty",
                                    "encoder_repetition_penalty",
                                    "guidance_scale",
                                    "encoder_no_repeat_ngram_size",
                                    "diversity_penalty",
                                    "penalty_alpha",
                                    "bad_words_ids",
                                    "suppress_tokens",
                                    "begin_suppress_tokens",
                                    "forced_decoder_ids",
                                    "sequence_bias",
                                    "stop_strings",
                                    "exponential_decay_length_penalty",
                                    "max_time"};

constexpr const char* kKnown[] = {"num_beams",
                                  "max_new_tokens",
                                  "max_length",
                                  "min_length",
                                  "min_new_tokens",
                                  "early_stopping",
                                  "no_repeat_ngram_size",
                                  "length_penalty",
                                  "decoder_start_token_id",
                                  "bos_token_id",
                                  "eos_token_id",
                                  "pad_token_id",
                                  "forced_bos_token_id",
                                  "forced_eos_token_id"};

json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) config_error("cannot read " + path.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    config_error(path.string() + ": " + e.what());
  }
}

}  // namespace

GenerationConfig GenerationConfig::from_json(const json& j) {
  if (!j.is_object()) config_error("a generation config must be a JSON object");
  for (const char* key : kRefused) {
    auto it = j.find(key);
    if (it != j.end() && !is_harmless(key, *it)) {
      config_error(std::string("generation setting not supported: ") + key + " = " + it->dump());
    }
  }
  GenerationConfig c;
  auto get = [&j](const char* key) -> const json* {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  if (const json* v = get("num_beams")) c.num_beams = as_int(*v, "num_beams");
  if (const json* v = get("max_new_tokens")) c.max_new_tokens = as_int(*v, "max_new_tokens");
  if (const json* v = get("max_length")) c.max_length = as_int(*v, "max_length");
  if (const json* v = get("min_length")) c.min_length = as_int(*v, "min_length");
  if (const json* v = get("min_new_tokens")) c.min_new_tokens = as_int(*v, "min_new_tokens");
  if (const json* v = get("early_stopping")) c.early_stopping = as_early_stopping(*v);
  if (const json* v = get("no_repeat_ngram_size")) {
    c.no_repeat_ngram_size = as_int(*v, "no_repeat_ngram_size");
  }
  if (const json* v = get("length_penalty")) {
    if (!v->is_number()) config_error("length_penalty must be a number");
    c.length_penalty = v->get<double>();
  }
  if (const json* v = get("decoder_start_token_id")) {
    c.decoder_start_token_id = as_int(*v, "decoder_start_token_id");
  }
  if (const json* v = get("bos_token_id")) c.bos_token_id = as_int(*v, "bos_token_id");
  if (const json* v = get("eos_token_id")) c.eos_token_ids = as_ids(*v, "eos_token_id");
  if (const json* v = get("pad_token_id")) c.pad_token_id = as_int(*v, "pad_token_id");
  if (const json* v = get("forced_bos_token_id")) {
    c.forced_bos_token_id = as_int(*v, "forced_bos_token_id");
  }
  if (const json* v = get("forced_eos_token_id")) {
    c.forced_eos_token_ids = as_ids(*v, "forced_eos_token_id");
  }
  c.validate();
  return c;
}

GenerationConfig GenerationConfig::from_model_dir(const std::filesystem::path& dir) {
  // Layered: generation_config.json, then config.json, then its text_config, each filling only
  // what the one before leaves unset. transformers 5 reads generation_config.json alone when it
  // exists; Microsoft's remote-code checkpoints keep the search settings in text_config (where
  // the seed's transformers 4.42 took them from), so the layers serve both layouts.
  json merged = json::object();
  auto fill = [&merged](const json& from) {
    if (!from.is_object()) return;
    for (auto it = from.begin(); it != from.end(); ++it) {
      if (it->is_null() || (merged.contains(it.key()) && !merged[it.key()].is_null())) continue;
      bool wanted = false;
      for (const char* key : kKnown) wanted = wanted || it.key() == key;
      for (const char* key : kRefused) wanted = wanted || it.key() == key;
      if (wanted) merged[it.key()] = *it;
    }
  };
  const auto generation = dir / "generation_config.json";
  if (std::filesystem::exists(generation)) fill(read_json_file(generation));
  const auto config = dir / "config.json";
  if (std::filesystem::exists(config)) {
    const json model = read_json_file(config);
    fill(model);
    for (const char* sub : {"decoder", "generator", "text_config"}) {
      if (model.contains(sub) && model[sub].is_object()) {
        fill(model[sub]);
        break;
      }
    }
  }
  return from_json(merged);
}

void GenerationConfig::set(std::string_view key, std::string_view value) {
  const std::string k(key);
  bool known = false;
  for (const char* name : kKnown) known = known || k == name;
  if (!known) config_error("unknown generation setting: " + k);
  const std::string text(value);
  json v;
  if (text == "none" || text == "null") {
    v = nullptr;
  } else if (k == "early_stopping") {
    if (text == "true")
      v = true;
    else if (text == "false")
      v = false;
    else if (text == "never")
      v = "never";
    else
      config_error("early_stopping must be true, false or never, not " + text);
  } else if (k == "length_penalty") {
    double x = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
    if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(x)) {
      config_error("length_penalty must be a number, not " + text);
    }
    v = x;
  } else {
    // Integers; the id lists (eos_token_id, forced_eos_token_id) also take "2,7".
    json ids = json::array();
    size_t pos = 0;
    while (true) {
      const size_t comma = text.find(',', pos);
      const std::string part =
          text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      int x = 0;
      auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), x);
      if (part.empty() || ec != std::errc() || end != part.data() + part.size()) {
        config_error(k + " must be an integer, not " + text);
      }
      ids.push_back(x);
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    const bool list_ok = k == "eos_token_id" || k == "forced_eos_token_id";
    if (ids.size() > 1 && !list_ok) config_error(k + " takes one integer, not " + text);
    v = ids.size() == 1 ? ids[0] : ids;
  }
  // Reuse the JSON reader for the field, keeping every other field as it is.
  GenerationConfig one = from_json(json{{k, v}});
  if (k == "num_beams")
    num_beams = v.is_null() ? 1 : one.num_beams;
  else if (k == "max_new_tokens")
    max_new_tokens = one.max_new_tokens;
  else if (k == "max_length")
    max_length = one.max_length;
  else if (k == "min_length")
    min_length = one.min_length;
  else if (k == "min_new_tokens")
    min_new_tokens = one.min_new_tokens;
  else if (k == "early_stopping")
    early_stopping = one.early_stopping;
  else if (k == "no_repeat_ngram_size")
    no_repeat_ngram_size = one.no_repeat_ngram_size;
  else if (k == "length_penalty")
    length_penalty = one.length_penalty;
  else if (k == "decoder_start_token_id")
    decoder_start_token_id = one.decoder_start_token_id;
  else if (k == "bos_token_id")
    bos_token_id = one.bos_token_id;
  else if (k == "eos_token_id")
    eos_token_ids = one.eos_token_ids;
  else if (k == "pad_token_id")
    pad_token_id = one.pad_token_id;
  else if (k == "forced_bos_token_id")
    forced_bos_token_id = one.forced_bos_token_id;
  else if (k == "forced_eos_token_id")
    forced_eos_token_ids = one.forced_eos_token_ids;
  validate();
}

int GenerationConfig::resolved_max_length(int prompt_length) const {
  if (max_new_tokens) return *max_new_tokens + prompt_length;
  if (max_length) return *max_length;
  return 20 + prompt_length;  // transformers' default: 20 new tokens
}

int GenerationConfig::resolved_min_length(int prompt_length) const {
  return min_new_tokens ? *min_new_tokens + prompt_length : min_length;
}

int32_t GenerationConfig::resolved_decoder_start() const {
  if (decoder_start_token_id) return *decoder_start_token_id;
  if (bos_token_id) return *bos_token_id;
  config_error("decoder_start_token_id or bos_token_id has to be set");
}

void GenerationConfig::validate() const {
  if (num_beams < 1) config_error("num_beams must be at least 1");
  if (max_new_tokens && *max_new_tokens < 1) config_error("max_new_tokens must be at least 1");
  if (max_length && *max_length < 1) config_error("max_length must be at least 1");
  if (min_length < 0) config_error("min_length must not be negative");
  if (min_new_tokens && *min_new_tokens < 0) config_error("min_new_tokens must not be negative");
  if (no_repeat_ngram_size < 0) config_error("no_repeat_ngram_size must not be negative");
  if (!std::isfinite(length_penalty)) config_error("length_penalty must be finite");
  auto check_id = [](std::optional<int32_t> id, const char* what) {
    if (id && *id < 0) config_error(std::string(what) + " must not be negative");
  };
  check_id(decoder_start_token_id, "decoder_start_token_id");
  check_id(bos_token_id, "bos_token_id");
  check_id(pad_token_id, "pad_token_id");
  check_id(forced_bos_token_id, "forced_bos_token_id");
  for (int32_t id : eos_token_ids) check_id(id, "eos_token_id");
  for (int32_t id : forced_eos_token_ids) check_id(id, "forced_eos_token_id");
}

GenerationResult generate(DecoderSession& session, const GenerationConfig& config) {
  config.validate();
  const int32_t start = config.resolved_decoder_start();
  const int max_length = config.resolved_max_length();
  if (max_length <= 1) config_error("max_length must leave room for one new token");
  const int rows = session.rows();
  if (rows <= 0 || rows % config.num_beams != 0) {
    config_error("the session has " + std::to_string(rows) + " rows, not a multiple of num_beams " +
                 std::to_string(config.num_beams));
  }
  Processors processors;
  processors.no_repeat_ngram_size = config.no_repeat_ngram_size;
  processors.min_length = config.eos_token_ids.empty() ? 0 : config.resolved_min_length();
  processors.max_length = max_length;
  processors.eos = config.eos_token_ids;
  processors.forced_bos = config.forced_bos_token_id;
  processors.forced_eos = config.forced_eos_token_ids;
  if (config.num_beams == 1) return greedy(session, config, processors, start, max_length);
  return beam_search(session, config, processors, start, max_length);
}

}  // namespace celeriac::florence
