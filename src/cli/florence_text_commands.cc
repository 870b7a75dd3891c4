// `celeriac tokenize`, `celeriac prompt` and `celeriac postprocess`: the Florence-2 text side on
// the command line, for checking it against the Python reference and debugging model outputs.
#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "florence/postprocess.h"
#include "florence/prompts.h"
#include "florence/tokenizer.h"

namespace celeriac::cli {
namespace {

struct TokenizeArgs {
  std::string model;                 // checkpoint folder or tokenizer files
  bool decode = false;               // JSON id arrays in, text out
  bool no_special_tokens = false;    // encode without <s> ... </s>
  bool skip_special_tokens = false;  // decode without special tokens
  bool no_clean_up = false;          // decode without clean_up_tokenization_spaces
  bool json_text = false;            // decode: print JSON strings (texts may hold newlines)
};

struct PostprocessArgs {
  std::string task;
  std::vector<int> image_size;  // W,H of the original image
  bool json_input = false;      // each line is a JSON string (texts may hold newlines)
};

struct PromptArgs {
  std::string task;
  std::string text;
  bool has_text = false;
  std::vector<double> region;   // x1,y1,x2,y2 in pixels (region tasks)
  std::vector<int> image_size;  // W,H for --region
};

// Input lines without their line terminator.
bool next_line(std::string& line) {
  if (!std::getline(std::cin, line)) return false;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

int run_tokenize(const TokenizeArgs& a) {
  const auto tok = florence::Tokenizer::load_florence(a.model);
  std::string line;
  while (next_line(line)) {
    if (a.decode) {
      auto ids = nlohmann::json::parse(line).get<std::vector<int32_t>>();
      florence::DecodeOptions o;
      o.skip_special_tokens = a.skip_special_tokens;
      if (a.no_clean_up) o.clean_up_tokenization_spaces = false;
      std::string text = tok.decode(ids, o);
      std::cout << (a.json_text ? florence::to_python_json(text) : text) << '\n';
    } else {
      std::cout << nlohmann::json(tok.encode(line, !a.no_special_tokens)).dump() << '\n';
    }
  }
  return 0;
}

int run_prompt(const PromptArgs& a) {
  std::optional<std::string> input;
  if (a.has_text) input = a.text;
  if (!a.region.empty()) {
    if (a.region.size() != 4 || a.image_size.size() != 2) {
      throw florence::RegionInputError("--region needs x1,y1,x2,y2 and --image-size W,H");
    }
    input = florence::region_to_loc_tokens(a.region[0], a.region[1], a.region[2], a.region[3],
                                           a.image_size[0], a.image_size[1]);
  }
  std::cout << florence::build_prompt(a.task, input) << '\n';
  return 0;
}

int run_postprocess(const PostprocessArgs& a) {
  if (a.image_size.size() != 2 || a.image_size[0] <= 0 || a.image_size[1] <= 0) {
    std::cerr << "error: --image-size must be W,H (positive)\n";
    return 2;
  }
  const florence::ImageSize size{a.image_size[0], a.image_size[1]};
  std::string line;
  while (next_line(line)) {
    std::string text = a.json_input ? nlohmann::json::parse(line).get<std::string>() : line;
    std::cout << florence::to_python_json(florence::post_process_generation(text, a.task, size))
              << '\n';
  }
  return 0;
}

// Runs a command, printing the typed errors of the text side instead of a stack of logs.
template <typename Fn>
void guarded(int& exit_code, Fn&& fn) {
  try {
    exit_code = fn();
  } catch (const florence::PromptError& e) {
    std::cerr << "error: " << e.what() << '\n';
    exit_code = 2;
  } catch (const florence::TokenizerLoadError& e) {
    std::cerr << "error: " << e.what() << '\n';
    exit_code = 2;
  } catch (const std::invalid_argument& e) {  // TokenizerInputError, PostProcessError
    std::cerr << "error: " << e.what() << '\n';
    exit_code = 1;
  } catch (const nlohmann::json::exception& e) {
    std::cerr << "error: bad JSON input: " << e.what() << '\n';
    exit_code = 1;
  }
}

}  // namespace

void add_florence_text_commands(CLI::App& app, int& exit_code) {
  static TokenizeArgs tokenize;
  auto* t = app.add_subcommand(
      "tokenize", "Florence-2 tokenizer: text lines on stdin -> JSON id arrays (or --decode)");
  t->add_option("--model", tokenize.model, "checkpoint folder or its tokenizer files")->required();
  t->add_flag("--decode", tokenize.decode, "read JSON id arrays, print text");
  t->add_flag("--no-special-tokens", tokenize.no_special_tokens, "encode without <s> ... </s>");
  t->add_flag("--skip-special-tokens", tokenize.skip_special_tokens,
              "decode without special tokens");
  t->add_flag("--no-clean-up", tokenize.no_clean_up, "decode without clean_up_tokenization_spaces");
  t->add_flag("--json", tokenize.json_text, "decode: print each text as a JSON string");
  t->callback([&exit_code] { guarded(exit_code, [] { return run_tokenize(tokenize); }); });

  static PromptArgs prompt;
  auto* p = app.add_subcommand("prompt", "Print the prompt Florence-2 builds for a task");
  p->add_option("--task", prompt.task, "task token, e.g. <OD>")->required();
  p->add_option("--text", prompt.text, "task input (text, or <loc_..> x4 for region tasks)")
      ->each([](const std::string&) { prompt.has_text = true; });
  p->add_option("--region", prompt.region, "region task input as pixels x1,y1,x2,y2")
      ->delimiter(',')
      ->expected(4);
  p->add_option("--image-size", prompt.image_size, "W,H of the image (with --region)")
      ->delimiter(',')
      ->expected(2);
  p->callback([&exit_code] { guarded(exit_code, [] { return run_prompt(prompt); }); });

  static PostprocessArgs post;
  auto* pp = app.add_subcommand(
      "postprocess", "Generated texts on stdin -> post_process_generation results as JSON lines");
  pp->add_option("--task", post.task, "task token the text answers, e.g. <OD>")->required();
  pp->add_option("--image-size", post.image_size, "W,H of the original image")
      ->delimiter(',')
      ->expected(2)
      ->required();
  pp->add_flag("--json-input", post.json_input, "each input line is a JSON string");
  pp->callback([&exit_code] { guarded(exit_code, [] { return run_postprocess(post); }); });
}

}  // namespace celeriac::cli
