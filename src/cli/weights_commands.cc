// `celeriac inspect-weights` and `celeriac download`: look into a Florence-2 checkpoint (local
// folder or Hub repo) the way the model will see it, and fill the shared Hugging Face cache.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "florence/hub.h"
#include "florence/weights_checkpoint.h"
#include "florence/weights_layout.h"

namespace celeriac::cli {
namespace {

using florence::Checkpoint;
using florence::CheckpointOptions;
using florence::HubError;
using florence::HubOptions;
using florence::WeightsError;

struct WeightsArgs {
  std::string model;      // folder or Hub repo id
  std::string revision;   // Hub revision (branch, tag, commit)
  std::string format;     // "", "safetensors", "pytorch"
  bool raw = false;       // names as stored in the file instead of canonical names
  bool summary = false;   // no per-tensor lines
  bool f32 = false;       // also upcast every tensor to float32 (timed)
  bool no_check = false;  // skip shape checks
};

HubOptions hub_options(const std::string& revision) {
  HubOptions o = HubOptions::from_env();
  if (!revision.empty()) o.revision = revision;
  return o;
}

int inspect(const WeightsArgs& a) {
  using clock = std::chrono::steady_clock;
  const auto dir = florence::resolve_model(a.model, hub_options(a.revision));
  CheckpointOptions options;
  options.format = a.format;
  options.check_shapes = !a.no_check;
  const auto t0 = clock::now();
  const Checkpoint ck = Checkpoint::open(dir, options);
  const double open_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  std::printf("checkpoint %s\n", dir.c_str());
  std::printf("format %s, key layout %s, %zu files, %.1f MB mapped, opened in %.2f ms\n",
              ck.format().c_str(), florence::key_layout_name(ck.file_layout()), ck.files().size(),
              ck.mapped_bytes() / 1e6, open_ms);
  const auto& c = ck.config();
  std::printf(
      "vision dims %d/%d/%d/%d depths %d/%d/%d/%d window %d; text d_model %d layers %d+%d "
      "vocab %d\n",
      c.vision.dim_embed.at(0), c.vision.dim_embed.at(1), c.vision.dim_embed.at(2),
      c.vision.dim_embed.at(3), c.vision.depths.at(0), c.vision.depths.at(1), c.vision.depths.at(2),
      c.vision.depths.at(3), c.vision.window_size, c.text.d_model, c.text.encoder_layers,
      c.text.decoder_layers, c.text.vocab_size);
  if (!a.summary) {
    if (a.raw) {
      const auto set =
          florence::read_checkpoint_tensors(ck.files().front().parent_path(), a.format);
      for (const auto& [name, v] : set.tensors) {
        std::printf("%s\t%s\t%s\n", name.c_str(),
                    std::string(florence::dtype_name(v.dtype)).c_str(), v.shape_string().c_str());
      }
    } else {
      for (const auto& name : ck.names()) {
        const auto& v = ck.tensor(name);
        std::printf("%s\t%s\t%s\n", name.c_str(),
                    std::string(florence::dtype_name(v.dtype)).c_str(), v.shape_string().c_str());
      }
    }
  }
  for (const auto& n : ck.notes()) std::printf("note: %s\n", n.c_str());
  for (const auto& n : ck.unused()) std::printf("unused: %s\n", n.c_str());
  if (a.f32) {
    const auto t1 = clock::now();
    double checksum = 0;
    std::size_t floats = 0;
    for (const auto& name : ck.names()) {
      auto s = ck.f32(name);
      for (std::size_t i = 0; i < s.size(); i += 1024) checksum += s[i];  // every 4 KiB page
      floats += s.size();
    }
    const double ms = std::chrono::duration<double, std::milli>(clock::now() - t1).count();
    std::printf("float32 views of %zu values in %.1f ms (sample sum %.6g)\n", floats, ms, checksum);
  }
  return 0;
}

}  // namespace

void add_weights_commands(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<WeightsArgs>();
  auto* inspect_cmd = app.add_subcommand(
      "inspect-weights", "List the tensors of a Florence-2 checkpoint (folder or Hub repo id)");
  inspect_cmd->add_option("--model", args->model, "checkpoint folder or Hub repo id")->required();
  inspect_cmd->add_option("--revision", args->revision, "Hub branch, tag or commit (default main)");
  inspect_cmd->add_option("--format", args->format, "safetensors or pytorch (default: as found)")
      ->check(CLI::IsMember({"", "safetensors", "pytorch"}));
  inspect_cmd->add_flag("--raw", args->raw, "names as stored in the file, not canonical names");
  inspect_cmd->add_flag("--summary", args->summary, "only the summary lines");
  inspect_cmd->add_flag("--f32", args->f32, "also make float32 views of every tensor, timed");
  inspect_cmd->add_flag("--no-check", args->no_check, "do not check shapes against config.json");
  inspect_cmd->callback([args, &exit_code] {
    try {
      exit_code = inspect(*args);
    } catch (const WeightsError& e) {
      spdlog::error("weights: {}", e.what());
      exit_code = 2;
    } catch (const HubError& e) {
      spdlog::error("hub: {}", e.what());
      exit_code = 3;
    }
  });

  auto dl = std::make_shared<WeightsArgs>();
  auto* download_cmd = app.add_subcommand(
      "download", "Fetch a Florence-2 repo into the Hugging Face cache and print its folder");
  download_cmd->add_option("repo", dl->model, "Hub repo id, e.g. microsoft/Florence-2-base-ft")
      ->required();
  download_cmd->add_option("--revision", dl->revision, "branch, tag or commit (default main)");
  download_cmd->callback([dl, &exit_code] {
    try {
      std::cout << florence::resolve_model(dl->model, hub_options(dl->revision)).string() << "\n";
      exit_code = 0;
    } catch (const HubError& e) {
      spdlog::error("hub: {}", e.what());
      exit_code = 3;
    }
  });
}

}  // namespace celeriac::cli
