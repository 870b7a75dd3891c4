// Entry point of `celeriac`: parses the command line and runs one subcommand.
// Subcommands are registered by the add_*_commands functions declared in commands.h.
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli/commands.h"

namespace celeriac::cli {

void add_version_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("version", "Print the celeriac version");
  cmd->callback([&exit_code] {
    std::cout << "celeriac 0.1.0\n";
    exit_code = 0;
  });
}

}  // namespace celeriac::cli

int main(int argc, char** argv) {
  CLI::App app{"celeriac: Celery-compatible asynchronous ML inference"};
  app.require_subcommand(1);
  int exit_code = 0;
  celeriac::cli::add_version_command(app, exit_code);
  celeriac::cli::add_queue_commands(app, exit_code);
  celeriac::cli::add_weights_commands(app, exit_code);
  celeriac::cli::add_image_commands(app, exit_code);
  celeriac::cli::add_florence_text_commands(app, exit_code);
  celeriac::cli::add_caption_command(app, exit_code);
  celeriac::cli::add_app_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return exit_code;
}
