// `celeriac caption`: one image through the whole Florence-2 pipeline on the command line, the
// way the seed's worker runs it: decode + preprocess, task prompt, tokenize, vision + text
// encoders, beam search, decode with special tokens kept, post_process_generation. Prints the
// parsed result as Python's json.dumps would, so it compares directly with the reference.
//
// Errors are one line on stderr and a non-zero exit: 2 for a bad request (unknown task, bad
// input text, a bad generation setting), 3 for an image that cannot be used, 4 for a model that
// cannot be loaded (missing tensor, bad config, Hub failure).
#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "florence/engine.h"
#include "florence/engine_library.h"
#include "florence/postprocess.h"

namespace celeriac::cli {
namespace {

struct CaptionArgs {
  std::string image;                                   // image file
  std::string task = "<CAPTION>";                      // task token
  std::optional<std::string> text;                     // task input (grounding, detection, regions)
  std::string model = "microsoft/Florence-2-base-ft";  // folder or Hub repo id
  std::string revision;                                // Hub revision
  std::string tokenizer;         // tokenizer folder when the model folder has none
  std::optional<int> num_beams;  // default: the checkpoint's (3 for Florence-2)
  int max_new_tokens = 1024;     // the seed's generate() call
  std::optional<int> min_new_tokens;
  std::vector<std::string> generation;  // extra KEY=VALUE generation settings
  bool raw = false;                     // also print ids and decoded text
  bool bf16_decoder = false;            // bf16 copies of the decoder's weights
  bool bf16 = false;                    // that, and bf16 GEMMs in the encoders
};

// The model runs in the engine module, loaded here on first use: the executable links none of
// oneDNN/OpenMP (florence/engine_library.h). The engine checks task, text and image before it
// reads the model, so a bad request fails fast.
int run_caption(const CaptionArgs& a) {
  florence::EngineOptions options;
  options.model = a.model;
  options.revision = a.revision;
  options.tokenizer_dir = a.tokenizer;
  options.num_beams = a.num_beams;
  options.max_new_tokens = a.max_new_tokens;
  options.min_new_tokens = a.min_new_tokens;
  options.generation = a.generation;
  options.bf16_decoder = a.bf16_decoder || a.bf16;
  options.bf16_encoders = a.bf16;
  const std::unique_ptr<florence::Engine> engine = florence::create_engine(options);

  florence::EngineRequest request;
  request.image_path = a.image;
  request.task = a.task;
  request.text = a.text;
  const florence::EngineResult result = engine->run({request}).at(0);
  if (result.error) throw *result.error;
  if (a.bf16 && !engine->bf16_encoders())  // the result is still right: say what ran
    std::cerr << "note: --bf16: this CPU has no bf16 arithmetic (AVX512_BF16 or AMX), so the "
                 "encoders ran in fp32; the decoder used bf16 weights\n";
  if (a.raw) {
    std::cout << nlohmann::json(result.generated_ids).dump() << '\n'
              << florence::to_python_json(result.text) << '\n';
  }
  std::cout << florence::to_python_json(result.parsed) << '\n';
  return 0;
}

void guarded(int& exit_code, const CaptionArgs& a) {
  try {
    exit_code = run_caption(a);
  } catch (const florence::EngineError& e) {  // request 2, image 3, model 4, other 1
    std::cerr << "error: " << e.what() << '\n';
    exit_code = static_cast<int>(e.kind);
  } catch (const std::exception& e) {  // the module cannot be loaded
    std::cerr << "error: " << e.what() << '\n';
    exit_code = 1;
  }
}

}  // namespace

void add_caption_command(CLI::App& app, int& exit_code) {
  static CaptionArgs args;
  auto* c = app.add_subcommand(
      "caption",
      "Run Florence-2 on one image and print the parsed result (as the reference's dict)");
  c->add_option("image", args.image, "image file (JPEG, PNG, WebP, BMP, GIF)")->required();
  c->add_option("--task", args.task, "task token, e.g. <OD> (default <CAPTION>)");
  c->add_option("--text", args.text, "task input: a phrase, or <loc_..> x4 for region tasks");
  c->add_option("--model", args.model,
                "checkpoint folder or Hub repo id (default microsoft/Florence-2-base-ft)");
  c->add_option("--revision", args.revision, "Hub branch, tag or commit (default main)");
  c->add_option("--tokenizer", args.tokenizer,
                "tokenizer folder, when the checkpoint folder has no tokenizer files");
  c->add_option("--num-beams", args.num_beams, "beams (default: the checkpoint's, 3); 1 = greedy")
      ->check(CLI::PositiveNumber);
  c->add_option("--max-new-tokens", args.max_new_tokens, "most tokens to generate (default 1024)")
      ->check(CLI::PositiveNumber);
  c->add_option("--min-new-tokens", args.min_new_tokens, "fewest tokens before </s> is allowed")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--generation", args.generation,
                "KEY=VALUE generation setting, as in generation_config.json (repeatable), e.g. "
                "early_stopping=never, no_repeat_ngram_size=0, length_penalty=2");
  c->add_flag("--raw", args.raw, "also print the generated ids and the decoded text first");
  c->add_flag("--bf16-decoder", args.bf16_decoder,
              "decode with bf16 copies of the decoder's weights (half the bytes per step)");
  c->add_flag("--bf16", args.bf16,
              "--bf16-decoder, and the vision and text encoders' products as bf16 GEMMs where "
              "the CPU has bf16 arithmetic (AVX512_BF16 or AMX; fp32 elsewhere)");
  c->callback([&exit_code] { guarded(exit_code, args); });
}

}  // namespace celeriac::cli
