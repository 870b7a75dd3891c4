// Florence-2 task prompts: the processor's `_construct_prompts` (task token -> English prompt,
// florence2.md section 12) exactly as Microsoft's remote code does it, plus a validating entry
// point for callers that pass a task and its input separately, and region quantisation for the
// `<REGION_TO_*>` inputs (14.2).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace celeriac::florence {

// Base of the prompt errors: the caller's request is wrong, retrying cannot help.
class PromptError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};
// A string that looks like a task token ("<...>") but is none of Florence-2's tasks.
class UnknownTaskError : public PromptError {
 public:
  using PromptError::PromptError;
};
// A task that needs text (grounding, detection, region tasks) was given none, or a task that
// takes none was given some (the reference asserts the token is the whole text).
class TaskInputError : public PromptError {
 public:
  using PromptError::PromptError;
};
// Region input that is not four <loc_N> tokens / four in-image pixel coordinates.
class RegionInputError : public PromptError {
 public:
  using PromptError::PromptError;
};

// Remote-code `_construct_prompts` for one text: a task token without input must be the whole
// text (else TaskInputError, the reference's assert); a task token with input is replaced by its
// template with every occurrence of the token removed from the text (no strip); any other text is
// returned unchanged.
std::string construct_prompt(std::string_view text);

// True for the 15 task tokens of florence2.md 12.
bool is_task_token(std::string_view task);
// The 15 task tokens, those without input first (the processor's table order).
std::vector<std::string_view> task_tokens();
// True for the tasks whose prompt template takes `{input}`.
bool task_takes_input(std::string_view task);
// True for the <REGION_TO_*> tasks, whose input is a region ("<loc_x1><loc_y1><loc_x2><loc_y2>").
bool task_takes_region(std::string_view task);

// The prompt for `task` with optional `input`, checked: unknown task -> UnknownTaskError, input
// missing/extra -> TaskInputError, region tasks need exactly four <loc_N> tokens with N in 0..999
// -> RegionInputError. Then the same string as construct_prompt(task + input).
std::string build_prompt(std::string_view task, std::optional<std::string_view> input = {});

// Pixel box [x1, y1, x2, y2] of a `width` x `height` image -> "<loc_..>" x4 with the reference's
// quantiser (floor(x / (W/1000)) in float32, clamped to 0..999). Non-finite, negative, reversed
// or out-of-image boxes -> RegionInputError.
std::string region_to_loc_tokens(double x1, double y1, double x2, double y2, int width, int height);

}  // namespace celeriac::florence
