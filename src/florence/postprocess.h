// Florence-2 post-processing: generated text -> the dict `processor.post_process_generation`
// returns (florence2.md section 14), following Microsoft's remote code, which the reference stack
// runs: float32-dequantised float coordinates, OCR labels kept verbatim (with the leading "</s>"),
// area threshold 0.01, pure text not stripped. The regexes are hand-written scanners with the
// same backtracking results as Python's `re`.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

namespace celeriac::florence {

// Text the reference itself fails on (a location bin too large for int64).
class PostProcessError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

enum class ParseType {
  kPureText,
  kOcr,
  kDescriptionWithBboxes,
  kBboxes,
  kPhraseGrounding,
  kPolygons,
  kDescriptionWithPolygons,
  kDescriptionWithBboxesOrPolygons,
};

// The reference's task -> parse type table; anything else (a prompt with input included) is
// pure text, as in the reference.
ParseType parse_type_for_task(std::string_view task);
const char* parse_type_name(ParseType type);

struct ImageSize {
  int width = 0;  // of the original image, before the 768x768 resize
  int height = 0;
};

// `{task: answer}` with keys in the reference's order (a JSON object that keeps insertion order).
nlohmann::ordered_json post_process_generation(std::string_view text, std::string_view task,
                                               ImageSize image_size);

// The answer of one parse type (the value under the task key).
nlohmann::ordered_json parse_generation(std::string_view text, ParseType type,
                                        ImageSize image_size);

// Serialises like Python's json.dumps(obj) with default arguments (", " and ": " separators,
// ensure_ascii, floats as repr()), the form Celery's JSON result carries.
std::string to_python_json(const nlohmann::ordered_json& value);
// Python repr() of a float.
std::string python_float_repr(double value);

}  // namespace celeriac::florence
