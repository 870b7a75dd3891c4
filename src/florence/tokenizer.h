// Florence-2's tokenizer: BART's byte-level BPE (GPT-2 scheme) plus the added tokens, encoding and
// decoding exactly as HF `tokenizers` (BartTokenizerFast) does, so prompts produce the reference's
// input ids and generated ids decode to the reference's text (florence2.md section 11).
//
// Loads either layout a checkpoint may carry: `tokenizer.json`, or `vocab.json` + `merges.txt`
// (+ `added_tokens.json`, `special_tokens_map.json`, `tokenizer_config.json`). `load_florence`
// then adds the 1,024 Florence-2 tokens at runtime, as Microsoft's Florence2Processor does; tokens
// already present (re-saved checkpoints) keep their ids.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace celeriac::florence {

// Tokenizer files missing, unreadable or of a kind this port does not implement.
class TokenizerLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Text given to encode() that is not valid UTF-8 (the reference only takes Python str).
class TokenizerInputError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A token matched verbatim in the text before BPE ("added token" in HF tokenizers).
struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = true;       // dropped by decode(skip_special_tokens)
  bool lstrip = false;       // the match swallows whitespace to its left (BART's <mask>)
  bool rstrip = false;       // ... and to its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched after normalisation (no normaliser here: second pass)
};

struct DecodeOptions {
  bool skip_special_tokens = false;  // drop special added tokens (<s>, </s>, <loc_n>, ...)
  // transformers' clean_up_tokenization (" ." -> "." ...); unset = tokenizer_config.json's value,
  // true when the file does not say (transformers 4.42, the reference stack, defaulted to true).
  std::optional<bool> clean_up_tokenization_spaces;
};

// The Florence-2 tokens Florence2Processor.__init__ adds, in its order (florence2.md 11.2).
const std::vector<std::string>& florence_added_tokens();

class Tokenizer {
 public:
  // `path` is a directory (checkpoint folder or tokenizer files) or a tokenizer.json file.
  static Tokenizer load(const std::filesystem::path& path);
  // load() followed by add_special_tokens(florence_added_tokens()).
  static Tokenizer load_florence(const std::filesystem::path& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Adds special tokens as transformers' add_special_tokens does: a token already known keeps its
  // id, a new one takes the next id after the vocabulary and earlier added tokens.
  void add_special_tokens(const std::vector<std::string>& tokens);

  // Token ids of `text`; with add_special_tokens, wrapped as <s> ... </s> (RobertaProcessing).
  // Throws TokenizerInputError for invalid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;

  // Text of `ids`. Ids outside the vocabulary are skipped, as HF tokenizers does; byte sequences
  // that are not UTF-8 become U+FFFD (errors="replace").
  std::string decode(std::span<const int32_t> ids, const DecodeOptions& options = {}) const;

  size_t vocab_size() const;  // model vocabulary plus added tokens
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;  // the raw (byte-mapped) token
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;

  struct Impl;  // opaque; public so the loaders in tokenizer.cc can fill it

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace celeriac::florence
