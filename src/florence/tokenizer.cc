// Byte-level BPE as HF `tokenizers` runs it for BART: added-token split (leftmost-longest), GPT-2
// pre-tokenizer regex, bytes -> unicode table, merges by rank (same priority-queue order as the
// Rust `Word::merge_all`), RobertaProcessing; decode through the ByteLevel decoder and
// transformers' clean_up_tokenization.
#include "florence/tokenizer.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <shared_mutex>
#include <sstream>
#include <unordered_map>

namespace celeriac::florence {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// ---- UTF-8 --------------------------------------------------------------------------------

// Decodes one code point at s[i]; returns its length, 0 if the bytes there are not UTF-8.
size_t utf8_next(std::string_view s, size_t i, char32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const size_t left = s.size() - i;
  unsigned char c = b(0);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  auto cont = [&](size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) {
    if (!cont(1)) return 0;
    cp = (char32_t(c & 0x1F) << 6) | (b(1) & 0x3F);
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;
    if (c == 0xED && b(1) > 0x9F) return 0;
    cp = (char32_t(c & 0x0F) << 12) | (char32_t(b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;
    if (c == 0xF4 && b(1) > 0x8F) return 0;
    cp = (char32_t(c & 0x07) << 18) | (char32_t(b(1) & 0x3F) << 12) | (char32_t(b(2) & 0x3F) << 6) |
         (b(3) & 0x3F);
    return 4;
  }
  return 0;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Rust's String::from_utf8_lossy: each maximal prefix of a would-be sequence that turns out
// invalid becomes one U+FFFD (Unicode's "substitution of maximal subparts").
std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    size_t n = utf8_next(s, i, cp);
    if (n > 0) {
      out.append(s.data() + i, n);
      i += n;
      continue;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    size_t j = i + 1;
    for (size_t k = 0; k < need && j < s.size(); ++k, ++j) {
      unsigned char d = static_cast<unsigned char>(s[j]);
      if (k == 0 ? (d < lo || d > hi) : ((d & 0xC0) != 0x80)) break;
    }
    out += "\xEF\xBF\xBD";
    i = j;
  }
  return out;
}

// ---- character classes of the GPT-2 split regex (Oniguruma, Unicode) ------------------------

enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

CharClass classify(char32_t cp) {
  static const std::array<CharClass, 128> ascii = [] {
    std::array<CharClass, 128> t{};
    for (int c = 0; c < 128; ++c) {
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        t[c] = CharClass::kLetter;
      } else if (c >= '0' && c <= '9') {
        t[c] = CharClass::kNumber;
      } else if (c == ' ' || (c >= 0x09 && c <= 0x0D)) {
        t[c] = CharClass::kSpace;
      } else {
        t[c] = CharClass::kOther;
      }
    }
    return t;
  }();
  if (cp < 128) return ascii[cp];
  // \s is Unicode White_Space; \p{L} and \p{N} are the general categories L* and N*.
  if (u_isUWhiteSpace(static_cast<UChar32>(cp))) return CharClass::kSpace;
  switch (u_charType(static_cast<UChar32>(cp))) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return CharClass::kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return CharClass::kNumber;
    default:
      return CharClass::kOther;
  }
}

// Splits `text` (valid UTF-8) as the regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does with find_iter: at each position the first alternative that matches wins, each greedy.
template <typename Fn>
void split_gpt2(std::string_view text, Fn&& emit) {
  // Decode once: positions and classes.
  thread_local std::vector<uint32_t> offs;
  thread_local std::vector<CharClass> cls;
  offs.clear();
  cls.clear();
  for (size_t i = 0; i < text.size();) {
    char32_t cp;
    size_t n = utf8_next(text, i, cp);
    offs.push_back(static_cast<uint32_t>(i));
    cls.push_back(classify(cp));
    i += n;
  }
  offs.push_back(static_cast<uint32_t>(text.size()));
  const size_t n = cls.size();
  auto run = [&](size_t k, CharClass c) {
    while (k < n && cls[k] == c) ++k;
    return k;
  };
  size_t k = 0;
  while (k < n) {
    const size_t start = k;
    const char first = text[offs[k]];
    size_t end = 0;
    if (first == '\'' && k + 1 < n) {
      std::string_view rest = text.substr(offs[k] + 1);
      for (std::string_view suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
        if (rest.starts_with(suffix)) {
          end = k + 1 + suffix.size();  // ASCII suffix: one char per byte
          break;
        }
      }
    }
    if (end == 0) {
      const bool space = first == ' ' && k + 1 < n;
      const size_t body = space ? k + 1 : k;
      const CharClass c = cls[body];
      if ((space && c != CharClass::kSpace) || (!space && c != CharClass::kSpace)) {
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the optional space is taken when the
        // class run follows it; a lone non-space char starts its own run.
        end = run(body, c);
      } else {
        // Whitespace: `\s+(?!\S)` leaves the last space of a run for the next word.
        size_t j = run(k, CharClass::kSpace);
        if (j == n) {
          end = j;
        } else if (j - k >= 2) {
          end = j - 1;
        } else {
          end = j;
        }
      }
    }
    emit(text.substr(offs[start], offs[end] - offs[start]));
    k = end;
  }
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards.
std::array<char32_t, 256> byte_to_unicode() {
  std::array<char32_t, 256> table{};
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  int next = 0;
  for (int b = 0; b < 256; ++b) table[b] = direct[b] ? b : 256 + next++;
  return table;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TokenizerLoadError("cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json read_json(const fs::path& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw TokenizerLoadError(path.string() + ": " + e.what());
  }
}

// transformers' PreTrainedTokenizerBase.clean_up_tokenization, replacement by replacement.
void replace_all(std::string& s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  std::string out;
  size_t found;
  bool any = false;
  while ((found = s.find(from, pos)) != std::string::npos) {
    if (!any) out.reserve(s.size());
    any = true;
    out.append(s, pos, found - pos);
    out.append(to);
    pos = found + from.size();
  }
  if (!any) return;
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

void clean_up_tokenization(std::string& s) {
  static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (auto [from, to] : kRules) replace_all(s, from, to);
}

// Byte-trie of added tokens for leftmost-longest matching.
class TokenTrie {
 public:
  void insert(std::string_view s, int32_t value) {
    size_t node = 0;
    for (unsigned char c : s) {
      auto key = edge_key(node, c);
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        values_.push_back(-1);
        it = edges_.emplace(key, values_.size() - 1).first;
      }
      node = it->second;
    }
    values_[node] = value;
    if (!s.empty()) first_[static_cast<unsigned char>(s[0])] = true;
  }
  // Longest token starting at `pos`: returns its value and sets `len`, or -1.
  int32_t longest(std::string_view s, size_t pos, size_t& len) const {
    if (!first_[static_cast<unsigned char>(s[pos])]) return -1;
    size_t node = 0;
    int32_t best = -1;
    for (size_t i = pos; i < s.size(); ++i) {
      auto it = edges_.find(edge_key(node, static_cast<unsigned char>(s[i])));
      if (it == edges_.end()) break;
      node = it->second;
      if (values_[node] >= 0) {
        best = values_[node];
        len = i + 1 - pos;
      }
    }
    return best;
  }
  bool empty() const { return values_.size() == 1; }

 private:
  static uint64_t edge_key(size_t node, unsigned char c) { return (uint64_t(node) << 8) | c; }
  std::unordered_map<uint64_t, size_t> edges_;
  std::vector<int32_t> values_{-1};
  std::array<bool, 256> first_{};
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

}  // namespace

const std::vector<std::string>& florence_added_tokens() {
  static const std::vector<std::string> tokens = [] {
    std::vector<std::string> t{"<od>", "</od>", "<ocr>", "</ocr>"};
    for (int i = 0; i < 1000; ++i) t.push_back("<loc_" + std::to_string(i) + ">");
    for (const char* s : {"<cap>",
                          "</cap>",
                          "<ncap>",
                          "</ncap>",
                          "<dcap>",
                          "</dcap>",
                          "<grounding>",
                          "</grounding>",
                          "<seg>",
                          "</seg>",
                          "<sep>",
                          "<region_cap>",
                          "</region_cap>",
                          "<region_to_desciption>",
                          "</region_to_desciption>",
                          "<proposal>",
                          "</proposal>",
                          "<poly>",
                          "</poly>",
                          "<and>"}) {
      t.emplace_back(s);
    }
    return t;
  }();
  return tokens;
}

struct Tokenizer::Impl {
  // Model.
  TokenMap vocab;
  std::vector<std::string> id_to_vocab;  // model ids (may have holes: empty)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) -> (rank, new id)
  std::optional<int32_t> unk_id;
  bool ignore_merges = false;
  bool add_prefix_space = false;
  std::array<int32_t, 256> byte_id{};      // vocab id of each byte's mapped char, -1 if absent
  std::array<std::string, 256> byte_char;  // the mapped char, UTF-8
  std::unordered_map<char32_t, uint8_t> char_byte;  // inverse table, for decode

  // Added vocabulary.
  std::vector<AddedToken> added;  // in order of addition
  std::unordered_map<int32_t, size_t> added_by_id;
  TokenMap added_by_content;
  TokenTrie trie_plain, trie_normalized;  // values: index into `added`

  // Post-processor and decode settings.
  std::optional<int32_t> cls_id, sep_id;
  int32_t bos = 0, eos = 2, pad = 1;
  bool clean_up_default = true;

  // BPE results per pre-token (as HF tokenizers caches them).
  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;
  static constexpr size_t kCacheCapacity = 100000;

  void init_bytes() {
    auto table = byte_to_unicode();
    for (int b = 0; b < 256; ++b) {
      std::string s;
      append_utf8(s, table[b]);
      byte_char[b] = s;
      auto it = vocab.find(s);
      byte_id[b] = it == vocab.end() ? -1 : it->second;
      char_byte[table[b]] = static_cast<uint8_t>(b);
    }
  }

  int32_t model_size() const { return static_cast<int32_t>(id_to_vocab.size()); }

  void set_vocab(TokenMap v) {
    vocab = std::move(v);
    int32_t max_id = -1;
    for (auto& [tok, id] : vocab) max_id = std::max(max_id, id);
    id_to_vocab.assign(max_id + 1, std::string());
    for (auto& [tok, id] : vocab) {
      if (id < 0) throw TokenizerLoadError("negative id in vocabulary");
      id_to_vocab[id] = tok;
    }
  }

  void add_merge(const std::string& a, const std::string& b, int32_t rank) {
    auto ia = vocab.find(a), ib = vocab.find(b), ic = vocab.find(a + b);
    if (ia == vocab.end() || ib == vocab.end() || ic == vocab.end()) {
      throw TokenizerLoadError("merge '" + a + " " + b + "' uses tokens outside the vocabulary");
    }
    merges.emplace(pair_key(ia->second, ib->second), std::make_pair(rank, ic->second));
  }

  static uint64_t pair_key(int32_t a, int32_t b) {
    return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
  }

  std::optional<int32_t> lookup(std::string_view token) const {
    if (auto it = added_by_content.find(token); it != added_by_content.end()) return it->second;
    if (auto it = vocab.find(token); it != vocab.end()) return it->second;
    return std::nullopt;
  }

  void rebuild_tries() {
    trie_plain = TokenTrie();
    trie_normalized = TokenTrie();
    for (size_t i = 0; i < added.size(); ++i) {
      (added[i].normalized ? trie_normalized : trie_plain)
          .insert(added[i].content, static_cast<int32_t>(i));
    }
  }

  // HF tokenizers' AddedVocabulary::add_tokens id rule.
  void add_token(AddedToken token, bool rebuild = true) {
    if (token.content.empty()) return;
    if (auto it = added_by_content.find(token.content); it != added_by_content.end()) {
      return;  // already added: keeps its id and flags
    }
    if (token.id < 0) {
      if (auto it = vocab.find(token.content); it != vocab.end()) {
        token.id = it->second;
      } else {
        int32_t max_added = -1;
        for (auto& t : added) max_added = std::max(max_added, t.id);
        token.id = (max_added >= model_size() || model_size() == 0) ? max_added + 1 : model_size();
        if (max_added < 0) token.id = model_size();
      }
    }
    added_by_id[token.id] = added.size();
    added_by_content[token.content] = token.id;
    added.push_back(std::move(token));
    if (rebuild) rebuild_tries();
  }

  // ---- encode ----

  void bpe(std::string_view word, std::vector<int32_t>& out) const {
    {
      std::shared_lock lock(cache_mutex);
      if (auto it = cache.find(word); it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> ids = bpe_uncached(word);
    out.insert(out.end(), ids.begin(), ids.end());
    std::unique_lock lock(cache_mutex);
    if (cache.size() < kCacheCapacity) cache.emplace(std::string(word), std::move(ids));
  }

  std::vector<int32_t> bpe_uncached(std::string_view word) const {
    std::vector<int32_t> result;
    if (ignore_merges) {
      std::string mapped;
      for (unsigned char c : word) mapped += byte_char[c];
      if (auto it = vocab.find(mapped); it != vocab.end()) return {it->second};
    }
    struct Symbol {
      int32_t id;
      int32_t prev, next;
      bool removed;
    };
    std::vector<Symbol> sym;
    sym.reserve(word.size());
    for (unsigned char c : word) {
      int32_t id = byte_id[c];
      if (id < 0) {
        // Not in the vocabulary: the unknown token if there is one (fuse_unk is false for
        // BART), else the byte is dropped, as HF tokenizers does.
        if (!unk_id) continue;
        id = *unk_id;
      }
      int32_t idx = static_cast<int32_t>(sym.size());
      sym.push_back({id, idx - 1, idx + 1, false});
    }
    if (sym.empty()) return result;
    sym.back().next = -1;
    struct Merge {
      int32_t rank, pos, new_id;
      bool operator<(const Merge& o) const {  // priority_queue is a max-heap: invert
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    std::priority_queue<Merge> queue;
    auto push = [&](int32_t pos) {
      int32_t nx = sym[pos].next;
      if (nx < 0) return;
      auto it = merges.find(pair_key(sym[pos].id, sym[nx].id));
      if (it != merges.end()) queue.push({it->second.first, pos, it->second.second});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) push(i);
    while (!queue.empty()) {
      Merge top = queue.top();
      queue.pop();
      Symbol& cur = sym[top.pos];
      if (cur.removed || cur.next < 0) continue;
      Symbol& right = sym[cur.next];
      auto it = merges.find(pair_key(cur.id, right.id));
      if (it == merges.end() || it->second.second != top.new_id) continue;  // stale entry
      cur.id = top.new_id;
      right.removed = true;
      cur.next = right.next;
      if (cur.next >= 0) sym[cur.next].prev = top.pos;
      if (cur.prev >= 0) push(cur.prev);
      push(top.pos);
    }
    for (auto& s : sym) {
      if (!s.removed) result.push_back(s.id);
    }
    return result;
  }

  void encode_segment(std::string_view seg, std::vector<int32_t>& out) const {
    if (seg.empty()) return;
    if (add_prefix_space && seg[0] != ' ') {
      std::string prefixed = " " + std::string(seg);
      split_gpt2(prefixed, [&](std::string_view w) { bpe(w, out); });
      return;
    }
    split_gpt2(seg, [&](std::string_view w) { bpe(w, out); });
  }

  // AddedVocabulary::find_matches: splits on `trie`'s tokens (leftmost-longest), honouring
  // lstrip/rstrip/single_word, then hands unmatched pieces to `rest`.
  template <typename Rest>
  void split_added(std::string_view text, const TokenTrie& trie, std::vector<int32_t>& out,
                   Rest&& rest) const {
    if (trie.empty()) {
      rest(text);
      return;
    }
    size_t start_offset = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t len = 0;
      int32_t idx = trie.longest(text, pos, len);
      if (idx < 0) {
        ++pos;
        continue;
      }
      const AddedToken& tok = added[idx];
      size_t start = pos, stop = pos + len;
      const size_t match_end = stop;
      if (tok.single_word) {
        bool start_space = start == 0 || !ends_with_word(text.substr(0, start));
        bool stop_space = stop == text.size() || !starts_with_word(text.substr(stop));
        if (!start_space || !stop_space) {
          pos = match_end;
          continue;
        }
      }
      if (tok.lstrip) {
        size_t s = start;
        while (s > 0) {
          size_t b = s - 1;
          while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
          char32_t cp;
          utf8_next(text, b, cp);
          if (!u_isUWhiteSpace(static_cast<UChar32>(cp))) break;
          s = b;
        }
        start = std::max(s, start_offset);
      }
      if (tok.rstrip) {
        size_t s = stop;
        while (s < text.size()) {
          char32_t cp;
          size_t n = utf8_next(text, s, cp);
          if (!u_isUWhiteSpace(static_cast<UChar32>(cp))) break;
          s += n;
        }
        stop = s;
      }
      if (start_offset < start) rest(text.substr(start_offset, start - start_offset));
      out.push_back(tok.id);
      start_offset = stop;
      pos = match_end;
    }
    if (start_offset < text.size()) rest(text.substr(start_offset));
  }

  static bool ends_with_word(std::string_view s) {
    size_t b = s.size() - 1;
    while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
    char32_t cp;
    utf8_next(s, b, cp);
    return word_char(cp);
  }
  static bool starts_with_word(std::string_view s) {
    char32_t cp;
    utf8_next(s, 0, cp);
    return word_char(cp);
  }
  static bool word_char(char32_t cp) {
    if (cp == '_') return true;
    return u_isalnum(static_cast<UChar32>(cp)) || u_isUAlphabetic(static_cast<UChar32>(cp));
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {

AddedToken added_token_from_json(const json& j, bool default_special) {
  AddedToken t;
  if (j.is_string()) {
    t.content = j.get<std::string>();
    t.special = default_special;
    return t;
  }
  t.content = j.at("content").get<std::string>();
  t.id = j.value("id", -1);
  t.special = j.value("special", default_special);
  t.lstrip = j.value("lstrip", false);
  t.rstrip = j.value("rstrip", false);
  t.single_word = j.value("single_word", false);
  t.normalized = j.value("normalized", !t.special);
  return t;
}

void load_tokenizer_json(Tokenizer::Impl& impl, const fs::path& file);

void check_supported(const json& j, const char* what, std::initializer_list<const char*> types) {
  if (j.is_null()) return;
  std::string type = j.value("type", "");
  for (const char* t : types) {
    if (type == t) return;
  }
  throw TokenizerLoadError(std::string("unsupported ") + what + " type '" + type + "'");
}

void load_tokenizer_json(Tokenizer::Impl& impl, const fs::path& file) {
  json j = read_json(file);
  const json& model = j.at("model");
  if (model.value("type", "BPE") != "BPE") throw TokenizerLoadError("model is not BPE");
  if (!model.value("continuing_subword_prefix", json("")).is_null() &&
      !model.value("continuing_subword_prefix", std::string()).empty()) {
    throw TokenizerLoadError("continuing_subword_prefix is not supported");
  }
  if (model.contains("dropout") && !model["dropout"].is_null()) {
    throw TokenizerLoadError("BPE dropout is not supported");
  }
  if (model.value("byte_fallback", false)) {
    throw TokenizerLoadError("byte_fallback is not supported");
  }
  if (!j.value("normalizer", json()).is_null()) {
    throw TokenizerLoadError("tokenizer.json normalizers are not supported");
  }
  check_supported(j.value("pre_tokenizer", json()), "pre_tokenizer", {"ByteLevel"});
  check_supported(j.value("decoder", json()), "decoder", {"ByteLevel"});
  check_supported(j.value("post_processor", json()), "post_processor",
                  {"RobertaProcessing", "BertProcessing", "ByteLevel"});
  TokenMap vocab;
  for (auto& [tok, id] : model.at("vocab").items()) vocab.emplace(tok, id.get<int32_t>());
  impl.set_vocab(std::move(vocab));
  int32_t rank = 0;
  for (const json& m : model.at("merges")) {
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos) throw TokenizerLoadError("bad merge '" + s + "'");
      impl.add_merge(s.substr(0, sp), s.substr(sp + 1), rank++);
    } else {
      impl.add_merge(m.at(0).get<std::string>(), m.at(1).get<std::string>(), rank++);
    }
  }
  impl.ignore_merges = model.value("ignore_merges", false);
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = impl.vocab.find(model["unk_token"].get<std::string>());
    if (it != impl.vocab.end()) impl.unk_id = it->second;
  }
  const json pre = j.value("pre_tokenizer", json());
  if (!pre.is_null()) {
    impl.add_prefix_space = pre.value("add_prefix_space", false);
    if (!pre.value("use_regex", true)) throw TokenizerLoadError("use_regex=false unsupported");
  }
  const json post = j.value("post_processor", json());
  if (!post.is_null() && post.contains("cls")) {
    impl.cls_id = post["cls"].at(1).get<int32_t>();
    impl.sep_id = post["sep"].at(1).get<int32_t>();
  }
  for (const json& t : j.value("added_tokens", json::array())) {
    impl.add_token(added_token_from_json(t, false), false);
  }
  impl.rebuild_tries();
}

// Special tokens named in tokenizer_config.json / special_tokens_map.json (string or dict).
std::optional<AddedToken> special_from(const json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::nullopt;
  AddedToken t = added_token_from_json(cfg[key], true);
  t.id = -1;
  return t;
}

void load_vocab_merges(Tokenizer::Impl& impl, const fs::path& dir, const json& config,
                       const json& special_map) {
  json vocab_json = read_json(dir / "vocab.json");
  TokenMap vocab;
  for (auto& [tok, id] : vocab_json.items()) vocab.emplace(tok, id.get<int32_t>());
  impl.set_vocab(std::move(vocab));
  std::istringstream merges(read_file(dir / "merges.txt"));
  std::string line;
  int32_t rank = 0;
  bool first = true;
  while (std::getline(merges, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (first && line.starts_with("#version")) {
      first = false;
      continue;
    }
    first = false;
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    if (sp == std::string::npos) throw TokenizerLoadError("bad merge line '" + line + "'");
    impl.add_merge(line.substr(0, sp), line.substr(sp + 1), rank++);
  }
  impl.add_prefix_space = config.value("add_prefix_space", false);
  // As transformers' RobertaConverter: BART's five specials become added tokens (<mask> with
  // lstrip), then added_tokens.json, then additional special tokens.
  json specials = config;
  for (auto& [k, v] : special_map.items()) specials[k] = v;
  for (const char* key :
       {"bos_token", "pad_token", "eos_token", "unk_token", "sep_token", "cls_token"}) {
    if (auto t = special_from(specials, key)) impl.add_token(*t, false);
  }
  if (auto t = special_from(specials, "mask_token")) {
    if (!specials["mask_token"].is_object()) t->lstrip = true;  // BartTokenizer's default
    impl.add_token(*t, false);
  }
  if (fs::exists(dir / "added_tokens.json")) {
    std::vector<std::pair<int32_t, std::string>> extra;
    const json added_json = read_json(dir / "added_tokens.json");  // outlives items()
    for (auto& [tok, id] : added_json.items()) {
      extra.emplace_back(id.get<int32_t>(), tok);
    }
    std::sort(extra.begin(), extra.end());
    for (auto& [id, tok] : extra) {
      AddedToken t;
      t.content = tok;
      t.id = id;
      impl.add_token(t, false);
    }
  }
  for (const json& t : specials.value("additional_special_tokens", json::array())) {
    impl.add_token(added_token_from_json(t, true), false);
  }
  auto find = [&](const char* key, int32_t fallback) {
    auto t = special_from(specials, key);
    if (!t) return fallback;
    return impl.lookup(t->content).value_or(fallback);
  };
  impl.cls_id = find("cls_token", find("bos_token", 0));
  impl.sep_id = find("sep_token", find("eos_token", 2));
  if (auto t = special_from(specials, "unk_token")) {
    if (auto it = impl.vocab.find(t->content); it != impl.vocab.end()) impl.unk_id = it->second;
  }
  impl.rebuild_tries();
}

}  // namespace

Tokenizer Tokenizer::load(const fs::path& path) {
  auto impl = std::make_unique<Impl>();
  fs::path dir = path;
  fs::path tokenizer_json;
  if (fs::is_regular_file(path)) {
    tokenizer_json = path;
    dir = path.parent_path();
  } else if (fs::is_directory(path)) {
    if (fs::exists(path / "tokenizer.json")) tokenizer_json = path / "tokenizer.json";
  } else {
    throw TokenizerLoadError("no tokenizer at " + path.string());
  }
  json config = fs::exists(dir / "tokenizer_config.json") ? read_json(dir / "tokenizer_config.json")
                                                          : json::object();
  json special_map = fs::exists(dir / "special_tokens_map.json")
                         ? read_json(dir / "special_tokens_map.json")
                         : json::object();
  try {
    if (!tokenizer_json.empty()) {
      load_tokenizer_json(*impl, tokenizer_json);
    } else if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt")) {
      load_vocab_merges(*impl, dir, config, special_map);
    } else {
      throw TokenizerLoadError("no tokenizer.json or vocab.json + merges.txt in " + dir.string());
    }
    // tokenizer_config.json's added_tokens_decoder (newer transformers) lists added tokens too.
    if (config.contains("added_tokens_decoder")) {
      std::vector<std::pair<int32_t, AddedToken>> extra;
      for (auto& [id, t] : config["added_tokens_decoder"].items()) {
        AddedToken tok = added_token_from_json(t, false);
        tok.id = std::stoi(id);
        extra.emplace_back(tok.id, tok);
      }
      std::sort(extra.begin(), extra.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      for (auto& [id, t] : extra) impl->add_token(t, false);
      impl->rebuild_tries();
    }
  } catch (const json::exception& e) {
    throw TokenizerLoadError(dir.string() + ": malformed tokenizer files: " + e.what());
  }
  impl->init_bytes();
  if (config.contains("clean_up_tokenization_spaces") &&
      config["clean_up_tokenization_spaces"].is_boolean()) {
    impl->clean_up_default = config["clean_up_tokenization_spaces"].get<bool>();
  }
  impl->bos = impl->lookup("<s>").value_or(0);
  impl->eos = impl->lookup("</s>").value_or(2);
  impl->pad = impl->lookup("<pad>").value_or(1);
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::load_florence(const fs::path& path) {
  Tokenizer t = load(path);
  t.add_special_tokens(florence_added_tokens());
  return t;
}

void Tokenizer::add_special_tokens(const std::vector<std::string>& tokens) {
  for (const auto& s : tokens) {
    AddedToken t;
    t.content = s;
    impl_->add_token(std::move(t), false);
  }
  impl_->rebuild_tries();
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  for (size_t i = 0; i < text.size();) {
    char32_t cp;
    size_t n = utf8_next(text, i, cp);
    if (n == 0) {
      throw TokenizerInputError("text is not valid UTF-8 (byte offset " + std::to_string(i) + ")");
    }
    i += n;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  const Impl& m = *impl_;
  if (add_special_tokens && m.cls_id) out.push_back(*m.cls_id);
  m.split_added(text, m.trie_plain, out, [&](std::string_view piece) {
    m.split_added(piece, m.trie_normalized, out,
                  [&](std::string_view seg) { m.encode_segment(seg, out); });
  });
  if (add_special_tokens && m.sep_id) out.push_back(*m.sep_id);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, const DecodeOptions& options) const {
  const Impl& m = *impl_;
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    const std::string* token = nullptr;
    if (auto it = m.added_by_id.find(id); it != m.added_by_id.end()) {
      const AddedToken& t = m.added[it->second];
      if (options.skip_special_tokens && t.special) continue;
      token = &t.content;
    } else if (id >= 0 && id < m.model_size() && !m.id_to_vocab[id].empty()) {
      token = &m.id_to_vocab[id];
    } else {
      continue;
    }
    // ByteLevel decoder: a token whose chars all come from the byte table becomes those bytes,
    // any other token is kept as its UTF-8 text.
    size_t mark = bytes.size();
    bool mapped = true;
    for (size_t i = 0; i < token->size();) {
      char32_t cp;
      size_t n = utf8_next(*token, i, cp);
      auto it = n ? m.char_byte.find(cp) : m.char_byte.end();
      if (it == m.char_byte.end()) {
        mapped = false;
        break;
      }
      bytes += static_cast<char>(it->second);
      i += n;
    }
    if (!mapped) {
      bytes.resize(mark);
      bytes += *token;
    }
  }
  std::string text = utf8_lossy(bytes);
  if (options.clean_up_tokenization_spaces.value_or(m.clean_up_default)) {
    clean_up_tokenization(text);
  }
  return text;
}

size_t Tokenizer::vocab_size() const {
  int32_t max_id = impl_->model_size() - 1;
  for (auto& t : impl_->added) max_id = std::max(max_id, t.id);
  return static_cast<size_t>(max_id + 1);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  return impl_->lookup(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end()) {
    return impl_->added[it->second].content;
  }
  if (id >= 0 && id < impl_->model_size() && !impl_->id_to_vocab[id].empty()) {
    return impl_->id_to_vocab[id];
  }
  return std::nullopt;
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }

}  // namespace celeriac::florence
