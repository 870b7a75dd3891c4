// Throughput of the Florence-2 text side on the golden corpora: tokenizer encode (tokens/s,
// cold BPE cache and warm), decode, and post-processing (results/s). Prints one JSON object;
// bench.py runs the Python reference on the same inputs and prints the ratios.
//   florence_text_bench TOKENIZER_DIR TOKENIZER_GOLDENS.jsonl POSTPROCESS_GOLDENS.jsonl [reps]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "florence/postprocess.h"
#include "florence/tokenizer.h"

using namespace celeriac::florence;
using clock_type = std::chrono::steady_clock;

static double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s TOKENIZER_DIR TOKENIZER_GOLDENS POSTPROCESS_GOLDENS [reps]\n",
                 argv[0]);
    return 2;
  }
  const int reps = argc > 4 ? std::atoi(argv[4]) : 5;
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> id_seqs;
  {
    std::ifstream in(argv[2]);
    std::string line;
    while (std::getline(in, line)) {
      auto g = nlohmann::json::parse(line);
      if (g.contains("text")) texts.push_back(g["text"]);
      id_seqs.push_back(g["ids"].get<std::vector<int32_t>>());
    }
  }
  struct Post {
    std::string task, text;
    ImageSize size;
  };
  std::vector<Post> posts;
  {
    std::ifstream in(argv[3]);
    std::string line;
    while (std::getline(in, line)) {
      auto g = nlohmann::json::parse(line);
      if (g.contains("error")) continue;
      posts.push_back({g["task"], g["text"], {g["image_size"][0], g["image_size"][1]}});
    }
  }
  auto t0 = clock_type::now();
  Tokenizer tok = Tokenizer::load_florence(argv[1]);
  const double load_s = seconds_since(t0);

  size_t tokens = 0;
  t0 = clock_type::now();
  for (const auto& t : texts) tokens += tok.encode(t).size();
  const double cold_s = seconds_since(t0);
  t0 = clock_type::now();
  for (int r = 0; r < reps; ++r) {
    for (const auto& t : texts) tok.encode(t);
  }
  const double warm_s = seconds_since(t0) / reps;
  size_t decoded_ids = 0;
  t0 = clock_type::now();
  for (int r = 0; r < reps; ++r) {
    for (const auto& ids : id_seqs) {
      decoded_ids += ids.size();
      tok.decode(ids);
    }
  }
  const double decode_s = seconds_since(t0) / reps;
  decoded_ids /= reps;
  t0 = clock_type::now();
  size_t bytes = 0;
  for (int r = 0; r < reps; ++r) {
    for (const auto& p : posts) {
      bytes += to_python_json(post_process_generation(p.text, p.task, p.size)).size();
    }
  }
  const double post_s = seconds_since(t0) / reps;
  nlohmann::json out = {
      {"load_s", load_s},
      {"texts", texts.size()},
      {"tokens", tokens},
      {"encode_tokens_per_s_cold", tokens / cold_s},
      {"encode_tokens_per_s_warm", tokens / warm_s},
      {"decode_ids_per_s", decoded_ids / decode_s},
      {"postprocess_records", posts.size()},
      {"postprocess_per_s", posts.size() / post_s},
  };
  std::printf("%s\n", out.dump().c_str());
  return bytes == 0;
}
