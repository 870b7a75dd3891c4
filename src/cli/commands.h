// Subcommands of the `celeriac` executable. Each part that offers commands defines one
// `add_*_commands` function in its own file under src/cli/ and main.cc calls it.
#pragma once

#include <CLI/CLI.hpp>

namespace celeriac::cli {

// The return code of the chosen subcommand is written to `exit_code` by its callback.
void add_version_command(CLI::App& app, int& exit_code);
// worker, call (queue_commands.cc)
void add_queue_commands(CLI::App& app, int& exit_code);
// inspect-weights, download (weights_commands.cc)
void add_weights_commands(CLI::App& app, int& exit_code);
// preprocess (image_commands.cc)
void add_image_commands(CLI::App& app, int& exit_code);
// tokenize, prompt, postprocess (florence_text_commands.cc)
void add_florence_text_commands(CLI::App& app, int& exit_code);
// caption (caption_commands.cc)
void add_caption_command(CLI::App& app, int& exit_code);
// app (app_commands.cc)
void add_app_command(CLI::App& app, int& exit_code);

}  // namespace celeriac::cli
