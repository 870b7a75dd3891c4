// Hugging Face Hub access for `--model microsoft/Florence-2-base-ft`: resolves a repo id to a local
// snapshot folder in the cache layout huggingface_hub uses, so Python and celeriac share downloads:
//   $HF_HUB_CACHE/models--<org>--<name>/blobs/<etag>          file contents (etag = sha256 of
//                                                             LFS files, git blob sha1 otherwise)
//                                     /snapshots/<commit>/<file>  relative symlinks to blobs
//                                     /refs/<revision>        commit of a branch or tag
//   $HF_HUB_CACHE/.locks/models--<org>--<name>/<etag>.lock    flock(2), as huggingface_hub's
// Environment as huggingface_hub reads it: HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN (else the
// $HF_HOME/token file; sent as a bearer header to the endpoint's host only, never logged),
// HF_HUB_OFFLINE. Downloads resume (HTTP Range) from `<etag>.incomplete`, retry after a dropped
// connection, verify the sha256 (LFS) or git sha1 (other files) the hub announced, and draw a
// progress bar on stderr.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace celeriac::florence {

class HubError : public std::runtime_error {
 public:
  enum class Kind {
    kNotFound,  // repo, revision or file does not exist (HTTP 404)
    kAuth,      // private or gated repo without a valid token (HTTP 401/403)
    kOffline,   // HF_HUB_OFFLINE set (or hub unreachable) and the file is not in the cache
    kNetwork,   // connection failed, timed out, or kept failing after retries
    kChecksum,  // downloaded bytes do not match the hash the hub announced
    kProtocol,  // unexpected answer (missing X-Repo-Commit, bad JSON, ...)
    kIo,        // cache folder not writable
  };
  HubError(Kind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

struct HubOptions {
  // Hub base URL (HF_ENDPOINT); no trailing slash.
  std::string endpoint = "https://huggingface.co";
  // Cache root (HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub).
  std::filesystem::path cache_dir;
  // Access token (HF_TOKEN, else the token file); empty for anonymous access.
  std::string token;
  // Never touch the network (HF_HUB_OFFLINE=1/ON/YES/TRUE).
  bool offline = false;
  // Branch, tag or commit hash.
  std::string revision = "main";
  // Progress bar on stderr while downloading.
  bool progress = true;
  // Attempts per file when the connection drops mid-transfer (each resumes where it stopped).
  int max_attempts = 5;
  // Seconds to wait for a connection; a transfer slower than 1 byte/s for stall_timeout_s fails.
  long connect_timeout_s = 10;
  long stall_timeout_s = 60;

  // Defaults overridden by the environment, as huggingface_hub does.
  static HubOptions from_env();
};

// True when `model` names a Hub repo ("org/name") rather than an existing local path.
bool looks_like_repo_id(const std::string& model);

// The snapshot folder holding a Florence-2 checkpoint: `model` itself when it is a directory,
// else the cached snapshot of that repo at options.revision, downloading what is missing:
// config.json, the weights (model.safetensors, else its sharded index and shards, else
// pytorch_model.bin, else its index and shards) and the processor/tokenizer files the repo has.
std::filesystem::path resolve_model(const std::string& model, const HubOptions& options);

// One file of a repo, cached; returns its path inside the snapshot folder.
std::filesystem::path hub_download(const std::string& repo_id, const std::string& filename,
                                   const HubOptions& options);

// models--org--name
std::string repo_folder_name(const std::string& repo_id);

}  // namespace celeriac::florence
