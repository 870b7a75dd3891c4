// Task prompt tables and construction, following Microsoft's processing_florence2.py (remote
// code of microsoft/Florence-2-base-ft): tables scanned in their order, first contained token wins.
#include "florence/prompts.h"

#include <cmath>
#include <utility>

namespace celeriac::florence {
namespace {

using Entry = std::pair<std::string_view, std::string_view>;

constexpr Entry kWithoutInput[] = {
    {"<OCR>", "What is the text in the image?"},
    {"<OCR_WITH_REGION>", "What is the text in the image, with regions?"},
    {"<CAPTION>", "What does the image describe?"},
    {"<DETAILED_CAPTION>", "Describe in detail what is shown in the image."},
    {"<MORE_DETAILED_CAPTION>", "Describe with a paragraph what is shown in the image."},
    {"<OD>", "Locate the objects with category name in the image."},
    {"<DENSE_REGION_CAPTION>", "Locate the objects in the image, with their descriptions."},
    {"<REGION_PROPOSAL>", "Locate the region proposals in the image."},
};

// "{input}" marks where the input goes.
constexpr Entry kWithInput[] = {
    {"<CAPTION_TO_PHRASE_GROUNDING>", "Locate the phrases in the caption: {input}"},
    {"<REFERRING_EXPRESSION_SEGMENTATION>", "Locate {input} in the image with mask"},
    {"<REGION_TO_SEGMENTATION>", "What is the polygon mask of region {input}"},
    {"<OPEN_VOCABULARY_DETECTION>", "Locate {input} in the image."},
    {"<REGION_TO_CATEGORY>", "What is the region {input}?"},
    {"<REGION_TO_DESCRIPTION>", "What does the region {input} describe?"},
    {"<REGION_TO_OCR>", "What text is in the region {input}?"},
};

std::string remove_all(std::string_view text, std::string_view token) {
  std::string out;
  size_t pos = 0, found;
  while ((found = text.find(token, pos)) != std::string_view::npos) {
    out.append(text.substr(pos, found - pos));
    pos = found + token.size();
  }
  out.append(text.substr(pos));
  return out;
}

// Python str.format with the single field {input}.
std::string fill(std::string_view tmpl, std::string_view input) {
  size_t at = tmpl.find("{input}");
  std::string out(tmpl.substr(0, at));
  out.append(input);
  out.append(tmpl.substr(at + 7));
  return out;
}

// Four "<loc_N>" with N of 1-3 ASCII digits in 0..999 and nothing else.
bool is_region(std::string_view s) {
  for (int k = 0; k < 4; ++k) {
    if (!s.starts_with("<loc_")) return false;
    s.remove_prefix(5);
    size_t digits = 0;
    while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
    if (digits == 0 || digits > 3 || digits >= s.size() || s[digits] != '>') return false;
    s.remove_prefix(digits + 1);
  }
  return s.empty();
}

}  // namespace

std::string construct_prompt(std::string_view text) {
  std::string prompt(text);
  for (auto [token, tmpl] : kWithoutInput) {
    if (prompt.find(token) != std::string::npos) {
      if (prompt != token) {
        throw TaskInputError("Task token " + std::string(token) +
                             " should be the only token in the text.");
      }
      prompt = tmpl;
      break;
    }
  }
  for (auto [token, tmpl] : kWithInput) {
    if (prompt.find(token) != std::string::npos) {
      prompt = fill(tmpl, remove_all(prompt, token));
      break;
    }
  }
  return prompt;
}

std::vector<std::string_view> task_tokens() {
  std::vector<std::string_view> out;
  for (auto [token, tmpl] : kWithoutInput) out.push_back(token);
  for (auto [token, tmpl] : kWithInput) out.push_back(token);
  return out;
}

bool is_task_token(std::string_view task) {
  for (auto [token, _] : kWithoutInput) {
    if (token == task) return true;
  }
  return task_takes_input(task);
}

bool task_takes_input(std::string_view task) {
  for (auto [token, _] : kWithInput) {
    if (token == task) return true;
  }
  return false;
}

bool task_takes_region(std::string_view task) {
  return task == "<REGION_TO_SEGMENTATION>" || task == "<REGION_TO_CATEGORY>" ||
         task == "<REGION_TO_DESCRIPTION>" || task == "<REGION_TO_OCR>";
}

std::string build_prompt(std::string_view task, std::optional<std::string_view> input) {
  if (!is_task_token(task)) {
    throw UnknownTaskError("unknown task '" + std::string(task) +
                           "' (expected one of Florence-2's task tokens, e.g. <CAPTION>, <OD>)");
  }
  const bool has_input = input && !input->empty();
  if (task_takes_input(task)) {
    if (!has_input) {
      throw TaskInputError("task " + std::string(task) +
                           (task_takes_region(task)
                                ? " needs a region: <loc_x1><loc_y1><loc_x2><loc_y2>"
                                : " needs text input"));
    }
    if (task_takes_region(task) && !is_region(*input)) {
      throw RegionInputError("task " + std::string(task) + " needs a region of four <loc_N> " +
                             "tokens (N in 0..999), got '" + std::string(*input) + "'");
    }
  } else if (has_input) {
    throw TaskInputError("task " + std::string(task) + " takes no input, got '" +
                         std::string(*input) + "'");
  }
  std::string text(task);
  if (has_input) text.append(*input);
  return construct_prompt(text);
}

std::string region_to_loc_tokens(double x1, double y1, double x2, double y2, int width,
                                 int height) {
  if (width <= 0 || height <= 0) throw RegionInputError("image size must be positive");
  const double box[4] = {x1, y1, x2, y2};
  for (double v : box) {
    if (!std::isfinite(v) || v < 0) {
      throw RegionInputError("region coordinates must be finite and non-negative");
    }
  }
  if (x1 > x2 || y1 > y2) throw RegionInputError("region needs x1 <= x2 and y1 <= y2");
  if (x2 > width || y2 > height) throw RegionInputError("region lies outside the image");
  // BoxQuantizer.quantize: float32 tensor / per-bin size, floor, clamp(0, 999).
  const float bin_w = static_cast<float>(width / 1000.0);
  const float bin_h = static_cast<float>(height / 1000.0);
  std::string out;
  for (int i = 0; i < 4; ++i) {
    float q = std::floor(static_cast<float>(box[i]) / (i % 2 == 0 ? bin_w : bin_h));
    q = std::min(std::max(q, 0.0f), 999.0f);
    out += "<loc_" + std::to_string(static_cast<int>(q)) + ">";
  }
  return out;
}

}  // namespace celeriac::florence
