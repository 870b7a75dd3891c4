// Post-processing scanners. Each function names the Python regex it stands for; the comments say
// where Python's backtracking decides the result.
#include "florence/postprocess.h"

#include <unicode/uchar.h>

#include <charconv>
#include <cstdint>
#include <optional>
#include <unordered_set>
#include <vector>

namespace celeriac::florence {
namespace {

using ojson = nlohmann::ordered_json;

// ---- characters -----------------------------------------------------------------------------

size_t char_len(std::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  return std::min(n, s.size() - i);
}

char32_t char_at(std::string_view s, size_t i, size_t n) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  switch (n) {
    case 1:
      return b(0);
    case 2:
      return (char32_t(b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return (char32_t(b(0) & 0x0F) << 12) | (char32_t(b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return (char32_t(b(0) & 0x07) << 18) | (char32_t(b(1) & 0x3F) << 12) |
             (char32_t(b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    char32_t min;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 2, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4, min = 0x10000;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    char32_t cp = char_at(s, i, n);
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

// Python's str.isspace() (also what `\s` and str.strip() use).
bool py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

size_t skip_space(std::string_view s, size_t i) {
  while (i < s.size()) {
    size_t n = char_len(s, i);
    if (!py_space(char_at(s, i, n))) break;
    i += n;
  }
  return i;
}

std::string py_strip(std::string_view s) {
  size_t b = skip_space(s, 0);
  size_t e = s.size();
  while (e > b) {
    size_t k = e - 1;
    while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    if (!py_space(char_at(s, k, e - k))) break;
    e = k;
  }
  return std::string(s.substr(b, e - b));
}

// phrase.encode("ascii", "ignore").decode("ascii")
std::string ascii_only(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x80) out += c;
  }
  return out;
}

std::string remove_all(std::string_view s, std::string_view token) {
  std::string out;
  size_t pos = 0, found;
  while ((found = s.find(token, pos)) != std::string_view::npos) {
    out.append(s.substr(pos, found - pos));
    pos = found + token.size();
  }
  out.append(s.substr(pos));
  return out;
}

// ---- tokens ---------------------------------------------------------------------------------

// A location bin as Python's int(); nullopt when it would overflow torch's int64.
using Bin = std::optional<int64_t>;

// `\d+` (Unicode Nd) at s[i]: returns the length matched (0 if none) and the value.
size_t match_digits(std::string_view s, size_t i, Bin* value) {
  size_t start = i;
  Bin v = 0;
  while (i < s.size()) {
    size_t n = char_len(s, i);
    char32_t c = char_at(s, i, n);
    int d;
    if (c >= '0' && c <= '9') {
      d = static_cast<int>(c - '0');
    } else if (c >= 0x80 && u_charType(static_cast<UChar32>(c)) == U_DECIMAL_DIGIT_NUMBER) {
      d = u_charDigitValue(static_cast<UChar32>(c));
    } else {
      break;
    }
    if (v && (*v > (INT64_MAX - d) / 10)) v.reset();
    if (v) v = *v * 10 + d;
    i += n;
  }
  if (value) *value = v;
  return i - start;
}

// `<loc_(\d+)>` at s[i]: length or 0.
size_t match_loc(std::string_view s, size_t i, Bin* value = nullptr) {
  if (s.compare(i, 5, "<loc_") != 0) return 0;
  size_t d = match_digits(s, i + 5, value);
  if (d == 0 || i + 5 + d >= s.size() || s[i + 5 + d] != '>') return 0;
  return 5 + d + 1;
}

// One unit of the polygon run: `<loc_\d+>|<sep>|<poly>|</poly>`.
size_t match_poly_unit(std::string_view s, size_t i) {
  if (size_t n = match_loc(s, i)) return n;
  for (std::string_view t : {"<sep>", "<poly>", "</poly>"}) {
    if (s.compare(i, t.size(), t) == 0) return t.size();
  }
  return 0;
}

// findall of `([^<]+(?:UNIT){4,})` (allow_empty false) or `(?:(?:UNIT){4,})` (true). With
// [^<]+ greedy, a run can only continue at the next '<'; when the units there are too few the
// engine retries from every later position, which first succeeds right after that '<'.
std::vector<std::string_view> find_runs(std::string_view s, bool allow_empty, bool poly) {
  std::vector<std::string_view> runs;
  auto units_from = [&](size_t e, size_t& end) {
    int count = 0;
    end = e;
    while (end < s.size()) {
      size_t n = poly ? match_poly_unit(s, end) : match_loc(s, end);
      if (n == 0) break;
      end += n;
      ++count;
    }
    return count;
  };
  size_t p = 0;
  while (p < s.size()) {
    if (!allow_empty && s[p] == '<') {
      ++p;
      continue;
    }
    size_t e = s.find('<', p);
    if (e == std::string_view::npos) break;
    size_t end;
    if (units_from(e, end) >= 4) {
      size_t start = allow_empty ? e : p;
      runs.push_back(s.substr(start, end - start));
      p = end;
    } else {
      p = e + 1;
    }
  }
  return runs;
}

// re.search(r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_[|<poly>])", s).group():
// the text before the first stop token, which must come before the first "\n" after the leading
// whitespace (`.` stops at newlines; \s* backtracking cannot find a different stop).
std::optional<std::string_view> search_phrase(std::string_view s, bool poly) {
  static constexpr std::string_view kStops[] = {"<od>",   "</od>",   "<box>", "</box>",
                                                "<bbox>", "</bbox>", "<loc_"};
  size_t q = skip_space(s, 0);
  while (true) {
    if (q < s.size() && s[q] == '<') {
      for (std::string_view t : kStops) {
        if (s.compare(q, t.size(), t) == 0) return s.substr(0, q);
      }
      if (poly && s.compare(q, 6, "<poly>") == 0) return s.substr(0, q);
    }
    if (q >= s.size() || s[q] == '\n') return std::nullopt;
    ++q;
  }
}

// Consecutive `<loc_(\d+)>` from the first '<' of a run (the box finditer over a run sees them
// in groups of four; a run's text part holds no '<').
std::vector<Bin> run_bins(std::string_view run) {
  std::vector<Bin> bins;
  size_t i = run.find('<');
  while (i != std::string_view::npos && i < run.size()) {
    Bin v;
    size_t n = match_loc(run, i, &v);
    if (n == 0) break;
    bins.push_back(v);
    i += n;
  }
  return bins;
}

// ---- coordinates ----------------------------------------------------------------------------

// The quantiser's dequantize on an int64 tensor: (q + 0.5) * (size / 1000) in float32.
struct Dequantizer {
  float bin_w, bin_h;
  explicit Dequantizer(ImageSize size)
      : bin_w(static_cast<float>(size.width / 1000.0)),
        bin_h(static_cast<float>(size.height / 1000.0)) {}
  static int64_t checked(const Bin& q) {
    if (!q)
      throw PostProcessError("location bin does not fit in int64 (Overflow when unpacking long)");
    return *q;
  }
  double x(const Bin& q) const { return (static_cast<float>(checked(q)) + 0.5f) * bin_w; }
  double y(const Bin& q) const { return (static_cast<float>(checked(q)) + 0.5f) * bin_h; }
  // Flat [x, y, x, y, ...] of pairs.
  ojson flat(const std::vector<Bin>& bins, size_t count) const {
    for (size_t i = 0; i < count; ++i) checked(bins[i]);  // torch.tensor sees them all first
    ojson out = ojson::array();
    for (size_t i = 0; i < count; ++i) out.push_back(i % 2 == 0 ? x(bins[i]) : y(bins[i]));
    return out;
  }
};

// ---- parse types ----------------------------------------------------------------------------

std::string remove_specials(std::string_view text) {
  return remove_all(remove_all(remove_all(text, "<s>"), "</s>"), "<pad>");
}

const std::unordered_set<std::string>& grounding_blacklist() {
  static const std::unordered_set<std::string> words = {
      "it",         "I",           "me",         "mine",          "you",      "your",
      "yours",      "he",          "him",        "his",           "she",      "her",
      "hers",       "they",        "them",       "their",         "theirs",   "one",
      "oneself",    "we",          "us",         "our",           "ours",     "its",
      "myself",     "yourself",    "himself",    "herself",       "itself",   "ourselves",
      "yourselves", "themselves",  "this",       "that",          "these",    "those",
      "who",        "whom",        "whose",      "which",         "what",     "all",
      "another",    "any",         "anybody",    "anyone",        "anything", "each",
      "everybody",  "everyone",    "everything", "few",           "many",     "nobody",
      "none",       "several",     "some",       "somebody",      "someone",  "something",
      "each other", "one another", "the image",  "image",         "images",   "the",
      "a",          "an",          "a group",    "other objects", "lots",     "a set"};
  return words;
}

struct BoxInstance {
  std::string label;
  std::vector<ojson> boxes;
};

// parse_description_with_bboxes_from_text_and_spans / parse_phrase_grounding_...: one instance
// per run with all its boxes.
std::vector<BoxInstance> parse_box_runs(std::string_view text, const Dequantizer& dq,
                                        bool allow_empty, bool grounding) {
  std::string clean = remove_specials(text);
  std::vector<BoxInstance> out;
  for (std::string_view run : find_runs(clean, allow_empty, false)) {
    // The "<obj>"/"<ground>" removal cannot change a run ([^<]+ then loc tokens).
    if (run.empty() && !allow_empty) continue;
    auto phrase_match = search_phrase(run, false);
    if (!phrase_match) continue;
    std::string phrase = py_strip(*phrase_match);
    std::vector<Bin> bins = run_bins(run);
    size_t groups = bins.size() / 4;
    if (groups == 0) continue;
    if (grounding && grounding_blacklist().count(phrase)) continue;
    for (size_t i = 0; i < groups * 4; ++i) Dequantizer::checked(bins[i]);
    BoxInstance inst;
    inst.label = ascii_only(phrase);
    for (size_t g = 0; g < groups; ++g) {
      inst.boxes.push_back(ojson::array({dq.x(bins[4 * g]), dq.y(bins[4 * g + 1]),
                                         dq.x(bins[4 * g + 2]), dq.y(bins[4 * g + 3])}));
    }
    out.push_back(std::move(inst));
  }
  return out;
}

struct PolygonInstance {
  std::string label;
  ojson polygons = ojson::array();
};

// parse_description_with_polygons_from_text_and_spans (with_box_at_start false).
std::vector<PolygonInstance> parse_polygon_runs(std::string_view text, const Dequantizer& dq,
                                                bool allow_empty) {
  std::string clean = remove_specials(text);
  std::vector<PolygonInstance> out;
  for (std::string_view run : find_runs(clean, allow_empty, true)) {
    // re.sub(r"^loc_\d+>", "", run, count=1): only a run that begins inside a loc token.
    std::string_view stripped = run;
    if (stripped.starts_with("loc_")) {
      size_t d = match_digits(stripped, 4, nullptr);
      if (d > 0 && 4 + d < stripped.size() && stripped[4 + d] == '>') {
        stripped.remove_prefix(4 + d + 1);
      }
    }
    if (stripped.empty() && !allow_empty) continue;
    auto phrase_match = search_phrase(stripped, true);
    if (!phrase_match) continue;
    std::string phrase = py_strip(*phrase_match);

    // Instances: the bodies of <poly>(.*?)</poly> when the run has both tokens, else the run.
    std::vector<std::string_view> instances;
    if (run.find("<poly>") != std::string_view::npos &&
        run.find("</poly>") != std::string_view::npos) {
      size_t p = 0, open;
      while ((open = run.find("<poly>", p)) != std::string_view::npos) {
        size_t body = open + 6;
        size_t close = run.find("</poly>", body);
        size_t newline = run.find('\n', body);
        if (close != std::string_view::npos &&
            (newline == std::string_view::npos || newline > close)) {
          instances.push_back(run.substr(body, close - body));
          p = close + 7;
        } else {
          p = open + 1;
        }
      }
    } else {
      instances.push_back(run);
    }

    for (std::string_view inst : instances) {
      // finditer of ((?:<loc_\d+>)+)(?:<sep>|$): a maximal loc run followed by <sep> or the end.
      std::vector<std::vector<Bin>> polys;
      size_t p = 0;
      while (p < inst.size()) {
        size_t e = inst.find('<', p);
        if (e == std::string_view::npos) break;
        std::vector<Bin> bins;
        size_t end = e;
        while (true) {
          Bin v;
          size_t n = match_loc(inst, end, &v);
          if (n == 0) break;
          bins.push_back(v);
          end += n;
        }
        bool at_end = end == inst.size() || (end + 1 == inst.size() && inst[end] == '\n');
        if (!bins.empty() && inst.compare(end, 5, "<sep>") == 0) {
          polys.push_back(std::move(bins));
          p = end + 5;
        } else if (!bins.empty() && at_end) {
          polys.push_back(std::move(bins));
          p = end;
        } else {
          p = e + 1;
        }
      }
      if (polys.empty()) continue;
      PolygonInstance pi;
      pi.label = phrase;
      for (auto& bins : polys) {
        size_t count = bins.size() % 2 == 1 ? bins.size() - 1 : bins.size();
        pi.polygons.push_back(dq.flat(bins, count));
      }
      out.push_back(std::move(pi));
    }
  }
  return out;
}

// parse_ocr_from_text_and_spans: findall of (.+?)<loc_(\d+)> x8, area threshold 0.01.
ojson parse_ocr(std::string_view text, ImageSize size, const Dequantizer& dq) {
  std::string s = remove_all(text, "<s>");
  ojson quads = ojson::array(), labels = ojson::array();
  auto eight_at = [&](size_t q, std::vector<Bin>& bins) -> size_t {
    bins.clear();
    size_t end = q;
    for (int k = 0; k < 8; ++k) {
      Bin v;
      size_t n = match_loc(s, end, &v);
      if (n == 0) return 0;
      bins.push_back(v);
      end += n;
    }
    return end;
  };
  const double min_area = static_cast<double>(int64_t(size.width) * size.height) * 0.01;
  std::vector<Bin> bins;
  size_t p = 0;
  while (p < s.size()) {
    if (s[p] == '\n') {
      ++p;
      continue;
    }
    size_t q = p + char_len(s, p);
    size_t end = 0;
    while (true) {
      if (q < s.size() && s[q] == '<' && (end = eight_at(q, bins)) != 0) break;
      if (q >= s.size() || s[q] == '\n') break;
      ++q;
    }
    if (end == 0) {
      p = q;  // no later start on this line can match either
      continue;
    }
    ojson quad = dq.flat(bins, 8);
    double xs[4], ys[4];
    for (int i = 0; i < 4; ++i) {
      xs[i] = quad[2 * i].get<double>();
      ys[i] = quad[2 * i + 1].get<double>();
    }
    // Shoelace over three edges (the remote code's range(4 - 1)), summed left to right.
    double sum = 0;
    for (int i = 0; i < 3; ++i) sum += xs[i] * ys[i + 1] - xs[i + 1] * ys[i];
    double area = 0.5 * std::abs(sum);
    if (!(area < min_area)) {
      quads.push_back(std::move(quad));
      labels.push_back(s.substr(p, q - p));
    }
    p = end;
  }
  ojson out = ojson::object();
  out["quad_boxes"] = std::move(quads);
  out["labels"] = std::move(labels);
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size();) {
    size_t n = char_len(s, i);
    char32_t c = char_at(s, i, n);
    i += n;
    auto u4 = [&](unsigned v) {
      out += "\\u";
      for (int k = 3; k >= 0; --k) out += hex[(v >> (4 * k)) & 0xF];
    };
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (c >= 0x7F && c > 0x7F)) {
          if (c >= 0x10000) {
            char32_t v = c - 0x10000;
            u4(0xD800 | (v >> 10));
            u4(0xDC00 | (v & 0x3FF));
          } else {
            u4(c);
          }
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void append_python_json(std::string& out, const ojson& v) {
  switch (v.type()) {
    case ojson::value_t::object: {
      out += '{';
      bool first = true;
      for (auto& [k, item] : v.items()) {
        if (!first) out += ", ";
        first = false;
        append_json_string(out, k);
        out += ": ";
        append_python_json(out, item);
      }
      out += '}';
      break;
    }
    case ojson::value_t::array: {
      out += '[';
      bool first = true;
      for (auto& item : v) {
        if (!first) out += ", ";
        first = false;
        append_python_json(out, item);
      }
      out += ']';
      break;
    }
    case ojson::value_t::string:
      append_json_string(out, v.get_ref<const std::string&>());
      break;
    case ojson::value_t::number_float:
      out += python_float_repr(v.get<double>());
      break;
    default:
      out += v.dump();
  }
}

}  // namespace

ParseType parse_type_for_task(std::string_view task) {
  if (task == "<OCR_WITH_REGION>") return ParseType::kOcr;
  if (task == "<OD>" || task == "<DENSE_REGION_CAPTION>") return ParseType::kDescriptionWithBboxes;
  if (task == "<CAPTION_TO_PHRASE_GROUNDING>") return ParseType::kPhraseGrounding;
  if (task == "<REFERRING_EXPRESSION_SEGMENTATION>" || task == "<REGION_TO_SEGMENTATION>") {
    return ParseType::kPolygons;
  }
  if (task == "<OPEN_VOCABULARY_DETECTION>") return ParseType::kDescriptionWithBboxesOrPolygons;
  if (task == "<REGION_PROPOSAL>") return ParseType::kBboxes;
  return ParseType::kPureText;
}

const char* parse_type_name(ParseType type) {
  switch (type) {
    case ParseType::kPureText:
      return "pure_text";
    case ParseType::kOcr:
      return "ocr";
    case ParseType::kDescriptionWithBboxes:
      return "description_with_bboxes";
    case ParseType::kBboxes:
      return "bboxes";
    case ParseType::kPhraseGrounding:
      return "phrase_grounding";
    case ParseType::kPolygons:
      return "polygons";
    case ParseType::kDescriptionWithPolygons:
      return "description_with_polygons";
    case ParseType::kDescriptionWithBboxesOrPolygons:
      return "description_with_bboxes_or_polygons";
  }
  return "pure_text";
}

ojson parse_generation(std::string_view text, ParseType type, ImageSize size) {
  if (!valid_utf8(text)) throw PostProcessError("generated text is not valid UTF-8");
  const Dequantizer dq(size);
  auto boxes_answer = [&](bool allow_empty, bool grounding) {
    ojson bboxes = ojson::array(), labels = ojson::array();
    for (auto& inst : parse_box_runs(text, dq, allow_empty, grounding)) {
      for (auto& box : inst.boxes) {
        bboxes.push_back(box);
        labels.push_back(inst.label);
      }
    }
    ojson out = ojson::object();
    out["bboxes"] = std::move(bboxes);
    out["labels"] = std::move(labels);
    return out;
  };
  auto polygons_answer = [&](bool allow_empty) {
    ojson polygons = ojson::array(), labels = ojson::array();
    for (auto& inst : parse_polygon_runs(text, dq, allow_empty)) {
      polygons.push_back(std::move(inst.polygons));
      labels.push_back(inst.label);
    }
    ojson out = ojson::object();
    out["polygons"] = std::move(polygons);
    out["labels"] = std::move(labels);
    return out;
  };
  switch (type) {
    case ParseType::kPureText:
      return remove_all(remove_all(text, "<s>"), "</s>");
    case ParseType::kOcr:
      return parse_ocr(text, size, dq);
    case ParseType::kDescriptionWithBboxes:
      return boxes_answer(false, false);
    case ParseType::kBboxes:
      return boxes_answer(true, false);
    case ParseType::kPhraseGrounding:
      return boxes_answer(false, true);
    case ParseType::kPolygons:
      return polygons_answer(true);
    case ParseType::kDescriptionWithPolygons:
      return polygons_answer(false);
    case ParseType::kDescriptionWithBboxesOrPolygons: {
      ojson out = ojson::object();
      out["bboxes"] = ojson::array();
      out["bboxes_labels"] = ojson::array();
      out["polygons"] = ojson::array();
      out["polygons_labels"] = ojson::array();
      if (text.find("<poly>") != std::string_view::npos) {
        ojson p = polygons_answer(false);
        out["polygons"] = std::move(p["polygons"]);
        out["polygons_labels"] = std::move(p["labels"]);
      } else {
        ojson b = boxes_answer(false, false);
        out["bboxes"] = std::move(b["bboxes"]);
        out["bboxes_labels"] = std::move(b["labels"]);
      }
      return out;
    }
  }
  return ojson();
}

ojson post_process_generation(std::string_view text, std::string_view task, ImageSize size) {
  ojson out = ojson::object();
  out[std::string(task)] = parse_generation(text, parse_type_for_task(task), size);
  return out;
}

std::string to_python_json(const ojson& value) {
  std::string out;
  append_python_json(out, value);
  return out;
}

std::string python_float_repr(double value) {
  if (value != value) return "NaN";
  if (value == std::numeric_limits<double>::infinity()) return "Infinity";
  if (value == -std::numeric_limits<double>::infinity()) return "-Infinity";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // "-d.ddde+XX"
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  int exp = std::stoi(sci.substr(e + 1));
  std::string digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] != '.') digits += sci[i];
  }
  std::string out = negative ? "-" : "";
  if (exp >= -5 + 1 && exp < 16) {  // repr uses fixed notation for 1e-4 <= |x| < 1e16
    if (exp < 0) {
      out += "0." + std::string(-exp - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out += digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  }
  return out;
}

}  // namespace celeriac::florence
