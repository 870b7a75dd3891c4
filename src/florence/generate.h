// Greedy and beam search over a DecoderSession, token for token what transformers' generate()
// (5.23.0) returns for the same logits: the same logits processors in the same order, the same
// float32 score arithmetic, the vectorised beam search's candidate, finishing and stopping rules.
//
//   GenerationConfig config = GenerationConfig::from_model_dir(dir);   // + CLI overrides
//   auto session = model.start(encoded, config.num_beams);
//   GenerationResult out = generate(*session, config);
//   out.sequences[b]   // [decoder_start, <s>, ..., </s>, pad...] for input b
//
// The search owns the token sequences; the session only turns tokens into logits and moves cache
// rows (decoder_session.h). Rows are inputs × beams, input b's beams on rows [b·K, (b+1)·K).
// Tested against transformers' own generate() on a toy model (generate_test.cc,
// scripts/fixtures/make_search_goldens.py) and end to end on the tiny Florence-2 checkpoints.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "florence/decoder_session.h"

namespace celeriac::florence {

// A setting we cannot honour (sampling, a repetition penalty, ...) or a malformed value.
// Refused rather than ignored: ignoring it would silently give other tokens than the reference.
class GenerationConfigError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// transformers' early_stopping: true stops an input once num_beams hypotheses are finished;
// false stops it when the best running beam (at its current length) cannot beat the worst
// finished one; "never" only when it could not even at max_length (for length_penalty > 0).
enum class EarlyStopping { kFalse, kTrue, kNever };

// The fields of generation_config.json that the search reads; unset optionals behave as
// transformers behaves when the field is absent. Lengths count the decoder prompt (the start
// token) as transformers' max_length / min_length do; the *_new_tokens ones do not.
struct GenerationConfig {
  int num_beams = 1;                  // 1 = greedy
  std::optional<int> max_new_tokens;  // wins over max_length
  std::optional<int> max_length;      // absent (and no max_new_tokens): 20 new tokens
  int min_length = 0;                 // EOS is banned while length < min_length
  std::optional<int> min_new_tokens;  // wins over min_length
  EarlyStopping early_stopping = EarlyStopping::kFalse;
  int no_repeat_ngram_size = 0;                   // 0 = off
  double length_penalty = 1.0;                    // finished score = sum log p / length^penalty
  std::optional<int32_t> decoder_start_token_id;  // absent: bos_token_id
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;          // empty: never stops before max length
  std::optional<int32_t> pad_token_id;         // absent: eos_token_ids[0]
  std::optional<int32_t> forced_bos_token_id;  // forced as the first generated token
  std::vector<int32_t> forced_eos_token_ids;   // forced as the last token at max length

  // A generation_config.json object (or a model config's generation fields). Unknown keys are
  // ignored; settings that change the search in ways we do not implement throw
  // GenerationConfigError, as do malformed values.
  static GenerationConfig from_json(const nlohmann::json& j);
  // generation_config.json when the folder has one, else config.json's fields, with those it
  // leaves unset taken from its text_config (Microsoft's remote-code layout keeps num_beams,
  // no_repeat_ngram_size, forced tokens there), as transformers' from_model_config does.
  static GenerationConfig from_model_dir(const std::filesystem::path& dir);

  // Sets one field from text, as a command line gives it: key as in generation_config.json
  // ("num_beams", "early_stopping" = true|false|never, "eos_token_id" = 2 or 2,7, "none" unsets
  // an optional). Throws GenerationConfigError for an unknown key or a bad value.
  void set(std::string_view key, std::string_view value);

  // transformers' max_length for a decoder prompt of `prompt_length` tokens (1: the start token).
  int resolved_max_length(int prompt_length = 1) const;
  int resolved_min_length(int prompt_length = 1) const;
  int32_t resolved_decoder_start() const;  // throws GenerationConfigError when neither is set
  // Throws GenerationConfigError for values the search cannot run with (num_beams < 1, ...).
  void validate() const;
};

struct GenerationResult {
  // Per input: the decoder start token, the generated tokens (EOS included when one ended the
  // sequence), then padding up to the longest sequence of the batch, as transformers pads.
  std::vector<std::vector<int32_t>> sequences;
  // Beam search: the length-normalised score of each returned sequence (transformers'
  // sequences_scores). Empty for greedy.
  std::vector<float> scores;
  // Generated tokens of each input before padding (EOS included), for callers that strip it.
  std::vector<int> lengths;
};

// Runs the search on a fresh session (no step taken yet) whose rows are inputs × num_beams
// (inputs × 1 for greedy). The first step feeds the decoder start token to every row. Throws
// GenerationConfigError for an invalid config or a session whose rows do not fit it.
GenerationResult generate(DecoderSession& session, const GenerationConfig& config);

}  // namespace celeriac::florence
