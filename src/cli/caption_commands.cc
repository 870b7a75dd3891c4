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
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "florence/generate.h"
#include "florence/hub.h"
#include "florence/model.h"
#include "florence/postprocess.h"
#include "florence/prompts.h"
#include "florence/tokenizer.h"
#include "florence/weights_tensor.h"
#include "image/decode.h"
#include "image/image_error.h"
#include "image/preprocess.h"
#include "nn/tensor.h"

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
};

// Request errors (exit 2), image errors (3) and model errors (4), each printed as one line.
struct RequestError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

florence::GenerationConfig generation_config(const CaptionArgs& a,
                                             const std::filesystem::path& dir) {
  florence::GenerationConfig c = florence::GenerationConfig::from_model_dir(dir);
  c.set("max_new_tokens", std::to_string(a.max_new_tokens));
  if (a.num_beams) c.set("num_beams", std::to_string(*a.num_beams));
  if (a.min_new_tokens) c.set("min_new_tokens", std::to_string(*a.min_new_tokens));
  for (const std::string& kv : a.generation) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) throw RequestError("--generation takes KEY=VALUE, not " + kv);
    c.set(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return c;
}

int run_caption(const CaptionArgs& a) {
  // The cheap checks first: a bad task or image fails before the model is read.
  const std::string prompt = florence::build_prompt(
      a.task, a.text ? std::optional<std::string_view>(*a.text) : std::nullopt);
  const image::DecodedImage decoded = image::decode_image_file(a.image);

  florence::HubOptions hub = florence::HubOptions::from_env();
  if (!a.revision.empty()) hub.revision = a.revision;
  const std::filesystem::path dir = florence::resolve_model(a.model, hub);
  const florence::GenerationConfig config = generation_config(a, dir);
  const florence::Model model(dir);
  std::unique_ptr<florence::Tokenizer> own_tokenizer;
  const florence::Tokenizer* tokenizer = model.tokenizer();
  if (!a.tokenizer.empty()) {
    own_tokenizer =
        std::make_unique<florence::Tokenizer>(florence::Tokenizer::load_florence(a.tokenizer));
    tokenizer = own_tokenizer.get();
  }
  if (tokenizer == nullptr) {
    throw florence::TokenizerLoadError("the model folder has no tokenizer files; pass --tokenizer");
  }

  const int steps = config.resolved_max_length() - 1;
  if (steps > model.config().text.max_position_embeddings) {
    throw RequestError(
        "--max-new-tokens " + std::to_string(steps) + " is more than the decoder's " +
        std::to_string(model.config().text.max_position_embeddings) + " positions allow");
  }
  const std::vector<int32_t> prompt_ids = tokenizer->encode(prompt);
  image::PreprocessedImage pixels = image::preprocess(decoded, model.preprocess_options());
  const nn::Tensor batch = nn::Tensor::view(pixels.chw.data(), {1, 3, pixels.height, pixels.width});
  const florence::EncodedBatch encoded = model.encode(batch, {prompt_ids});
  auto session = model.start(encoded, config.num_beams, config.resolved_max_length() - 1);
  const florence::GenerationResult out = florence::generate(*session, config);

  const std::vector<int32_t>& ids = out.sequences.at(0);
  florence::DecodeOptions decode;
  decode.clean_up_tokenization_spaces = true;  // the reference stack's decode (transformers 4.42)
  const std::string text = tokenizer->decode(ids, decode);
  if (a.raw) {
    std::cout << nlohmann::json(ids).dump() << '\n' << florence::to_python_json(text) << '\n';
  }
  const florence::ImageSize size{decoded.width, decoded.height};
  std::cout << florence::to_python_json(florence::post_process_generation(text, a.task, size))
            << '\n';
  return 0;
}

void guarded(int& exit_code, const CaptionArgs& a) {
  auto fail = [&exit_code](int code, const std::string& what) {
    std::cerr << "error: " << what << '\n';
    exit_code = code;
  };
  try {
    exit_code = run_caption(a);
  } catch (const florence::PromptError& e) {
    fail(2, e.what());
  } catch (const florence::GenerationConfigError& e) {
    fail(2, std::string("generation: ") + e.what());
  } catch (const RequestError& e) {
    fail(2, e.what());
  } catch (const image::ImageError& e) {
    fail(3, std::string("image: ") + e.what());
  } catch (const florence::WeightsError& e) {
    fail(4, std::string("model: ") + e.what());
  } catch (const florence::TokenizerLoadError& e) {
    fail(4, std::string("tokenizer: ") + e.what());
  } catch (const florence::HubError& e) {
    fail(4, std::string("hub: ") + e.what());
  } catch (const std::exception& e) {  // shape errors, post-processing, I/O
    fail(1, e.what());
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
  c->callback([&exit_code] { guarded(exit_code, args); });
}

}  // namespace celeriac::cli
