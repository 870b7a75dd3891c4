// The Florence-2 engine as one interface: load a model once, run requests (image + task + text)
// to the reference's parsed dict. Implemented in the dlopen'ed module libceleriac_florence.so
// (engine.cc), which holds the model and its compute libraries (oneDNN, OpenMP); callers in the
// `celeriac` executable reach it through engine_library.h, so a queue-only worker never maps
// them (docs/decisions/engine-module.md).
//
// Both sides are built by the same compiler from the same tree, so the interface passes C++
// types (std::string, nlohmann::json) and one exception type; only the factory is extern "C".
// Used by `celeriac caption` and, next, by the worker's tasks.inference_task: one Engine per
// process, run() taking the requests a batch has gathered.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace celeriac::florence {

// What went wrong, mapped to the caption command's exit codes and, in the worker, to a
// permanent FAILURE (request, image, model) or a bug (internal).
enum class EngineErrorKind {
  request = 2,   // unknown task, bad task input, bad generation setting
  image = 3,     // image missing, undecodable, too large
  model = 4,     // checkpoint, tokenizer or Hub failure
  internal = 1,  // anything else (shape errors, post-processing, I/O)
};

// The one error type that crosses the module boundary; what() is the line the CLI prints
// ("image: ...", "model: ...").
struct EngineError : std::runtime_error {
  EngineError(EngineErrorKind kind, const std::string& what)
      : std::runtime_error(what), kind(kind) {}
  EngineErrorKind kind;
};

// Which model and how to generate; fixed for the Engine's life.
struct EngineOptions {
  std::string model = "microsoft/Florence-2-base-ft";  // checkpoint folder or Hub repo id
  std::string revision;                                // Hub revision (empty: HF env / main)
  std::string tokenizer_dir;            // tokenizer folder when the checkpoint has none
  std::optional<int> num_beams;         // default: the checkpoint's generation_config (3)
  int max_new_tokens = 1024;            // the seed's generate() call
  std::optional<int> min_new_tokens;    // fewest tokens before </s>
  std::vector<std::string> generation;  // extra generation_config settings, "KEY=VALUE"
  bool bf16_decoder = false;            // decode steps read bf16 copies (ModelOptions)
  bool bf16_encoders = false;           // bf16 GEMMs in the encoders where the CPU has them
};

// One image and task. Exactly one of image_bytes / image_path is used (bytes win when set).
struct EngineRequest {
  std::string image_bytes;          // encoded JPEG/PNG/WebP/BMP/GIF, e.g. fetched from a URL
  std::string image_path;           // or a file to read
  std::string task = "<CAPTION>";   // task token
  std::optional<std::string> text;  // task input (grounding, detection, regions)
  // The task string post-processing is keyed on, when not `task`: the reference worker passes
  // its whole task_prompt ("<CAPTION_TO_PHRASE_GROUNDING>a car"), which the reference parses as
  // pure text under that key.
  std::optional<std::string> answer_task;
};

// One request's answer, or its error (a bad request in a batch does not fail the others).
struct EngineResult {
  nlohmann::ordered_json parsed;       // {task: answer}, the reference's post_process_generation
  std::vector<int32_t> generated_ids;  // generate()'s sequence, decoder start token included
  std::string text;                    // decoded with special tokens kept
  std::optional<EngineError> error;    // set when this request failed; the fields above are empty
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Runs each request; checks every request's task, text and image before the model is first
  // loaded (so a bad request fails fast), then loads the model once (EngineError of kind model
  // is thrown when it cannot be). Not thread-safe: one caller at a time.
  virtual std::vector<EngineResult> run(const std::vector<EngineRequest>& requests) = 0;
  // Whether the loaded model runs its encoders as bf16 GEMMs (EngineOptions::bf16_encoders on a
  // CPU with bf16 arithmetic); false before the first run() loaded it.
  virtual bool bf16_encoders() const = 0;
};

}  // namespace celeriac::florence

// The module's factory: a new Engine that loads options' model on first run(). Never throws
// across the C boundary: returns nullptr and sets *error instead.
extern "C" celeriac::florence::Engine* celeriac_florence_create_engine(
    const celeriac::florence::EngineOptions* options, std::string* error);
