// The Florence-2 engine behind engine.h, built into the module libceleriac_florence.so: decode +
// preprocess, task prompt, tokenize, vision + text encoders, beam search, decode with special
// tokens kept, post_process_generation, as the seed's worker runs it. Internal errors become
// EngineError here, so callers need none of the model's headers or libraries.
#include "florence/engine.h"

#include <filesystem>
#include <span>

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

namespace celeriac::florence {
namespace {

// Maps the parts' typed errors to the engine's kinds, with the CLI's prefixes.
EngineError to_engine_error(std::exception_ptr failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const EngineError& e) {
    return e;
  } catch (const PromptError& e) {
    return {EngineErrorKind::request, e.what()};
  } catch (const GenerationConfigError& e) {
    return {EngineErrorKind::request, std::string("generation: ") + e.what()};
  } catch (const image::ImageError& e) {
    return {EngineErrorKind::image, std::string("image: ") + e.what()};
  } catch (const WeightsError& e) {
    return {EngineErrorKind::model, std::string("model: ") + e.what()};
  } catch (const TokenizerLoadError& e) {
    return {EngineErrorKind::model, std::string("tokenizer: ") + e.what()};
  } catch (const HubError& e) {
    return {EngineErrorKind::model, std::string("hub: ") + e.what()};
  } catch (const std::exception& e) {
    return {EngineErrorKind::internal, e.what()};
  }
}

// A request that passed the cheap checks.
struct CheckedRequest {
  std::string prompt;
  image::DecodedImage decoded;
};

class FlorenceEngine final : public Engine {
 public:
  explicit FlorenceEngine(EngineOptions options) : options_(std::move(options)) {}

  bool bf16_encoders() const override { return model_ && model_->bf16_encoders(); }

  std::vector<EngineResult> run(const std::vector<EngineRequest>& requests) override {
    std::vector<EngineResult> results(requests.size());
    std::vector<std::optional<CheckedRequest>> checked(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      try {
        checked[i] = check(requests[i]);
      } catch (...) {
        results[i].error = to_engine_error(std::current_exception());
      }
    }
    bool any = false;
    for (const auto& c : checked) any = any || c.has_value();
    if (!any) return results;
    try {
      load();
    } catch (...) {
      throw to_engine_error(std::current_exception());
    }
    // All checked requests in one encode and one search: the decode steps, which read every
    // decoder weight once per step, then serve the whole batch (each input's tokens are the
    // single-input run's: generate_model_test's TinyCheckpointBatch). Should the batch fail,
    // each request runs alone, so that one request's failure is its own.
    std::vector<size_t> batch;
    for (size_t i = 0; i < requests.size(); ++i)
      if (checked[i]) batch.push_back(i);
    if (batch.size() > 1) {
      try {
        run_batch(requests, checked, batch, results);
        return results;
      } catch (...) {
        for (size_t i : batch) results[i] = EngineResult{};
      }
    }
    for (size_t i : batch) {
      try {
        run_batch(requests, checked, {i}, results);
      } catch (...) {
        results[i] = EngineResult{};
        results[i].error = to_engine_error(std::current_exception());
      }
    }
    return results;
  }

 private:
  static CheckedRequest check(const EngineRequest& r) {
    CheckedRequest c;
    c.prompt =
        build_prompt(r.task, r.text ? std::optional<std::string_view>(*r.text) : std::nullopt);
    if (!r.image_bytes.empty()) {
      c.decoded = image::decode_image(std::span<const uint8_t>(
          reinterpret_cast<const uint8_t*>(r.image_bytes.data()), r.image_bytes.size()));
    } else {
      c.decoded = image::decode_image_file(r.image_path);
    }
    return c;
  }

  void load() {
    if (model_) return;
    HubOptions hub = HubOptions::from_env();
    if (!options_.revision.empty()) hub.revision = options_.revision;
    const std::filesystem::path dir = resolve_model(options_.model, hub);
    GenerationConfig config = GenerationConfig::from_model_dir(dir);
    config.set("max_new_tokens", std::to_string(options_.max_new_tokens));
    if (options_.num_beams) config.set("num_beams", std::to_string(*options_.num_beams));
    if (options_.min_new_tokens) {
      config.set("min_new_tokens", std::to_string(*options_.min_new_tokens));
    }
    for (const std::string& kv : options_.generation) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos) {
        throw EngineError(EngineErrorKind::request, "--generation takes KEY=VALUE, not " + kv);
      }
      config.set(kv.substr(0, eq), kv.substr(eq + 1));
    }
    auto model = std::make_unique<Model>(
        dir, ModelOptions{.bf16_decoder = options_.bf16_decoder,
                          .bf16_encoders = options_.bf16_encoders});
    if (!options_.tokenizer_dir.empty()) {
      own_tokenizer_ =
          std::make_unique<Tokenizer>(Tokenizer::load_florence(options_.tokenizer_dir));
    }
    if (!own_tokenizer_ && model->tokenizer() == nullptr) {
      throw TokenizerLoadError("the model folder has no tokenizer files; pass --tokenizer");
    }
    const int steps = config.resolved_max_length() - 1;
    if (steps > model->config().text.max_position_embeddings) {
      throw EngineError(
          EngineErrorKind::request,
          "--max-new-tokens " + std::to_string(steps) + " is more than the decoder's " +
              std::to_string(model->config().text.max_position_embeddings) + " positions allow");
    }
    config_ = std::make_unique<GenerationConfig>(std::move(config));
    model_ = std::move(model);
  }

  const Tokenizer& tokenizer() const {
    return own_tokenizer_ ? *own_tokenizer_ : *model_->tokenizer();
  }

  // Requests `which` (checked) through the model together; fills their results.
  void run_batch(const std::vector<EngineRequest>& requests,
                 const std::vector<std::optional<CheckedRequest>>& checked,
                 const std::vector<size_t>& which, std::vector<EngineResult>& results) const {
    std::vector<std::vector<int32_t>> prompt_ids;
    std::vector<float> pixels;
    int64_t height = 0, width = 0;
    for (size_t i : which) {
      prompt_ids.push_back(tokenizer().encode(checked[i]->prompt));
      const image::PreprocessedImage p =
          image::preprocess(checked[i]->decoded, model_->preprocess_options());
      height = p.height;  // the processor's fixed size: the same for every image
      width = p.width;
      pixels.insert(pixels.end(), p.chw.begin(), p.chw.end());
    }
    const int64_t n = static_cast<int64_t>(which.size());
    const nn::Tensor batch = nn::Tensor::view(pixels.data(), {n, 3, height, width});
    const EncodedBatch encoded = model_->encode(batch, prompt_ids);
    auto session = model_->start(encoded, config_->num_beams, config_->resolved_max_length() - 1);
    const GenerationResult generated = generate(*session, *config_);

    DecodeOptions decode;
    decode.clean_up_tokenization_spaces = true;  // the reference stack's decode (transformers 4.42)
    for (size_t b = 0; b < which.size(); ++b) {
      const EngineRequest& r = requests[which[b]];
      const CheckedRequest& c = *checked[which[b]];
      EngineResult& out = results[which[b]];
      // The start token and this input's own tokens: the batch's padding is not the reference's.
      const std::vector<int32_t>& ids = generated.sequences.at(b);
      out.generated_ids.assign(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 1 + generated.lengths.at(b)));
      out.text = tokenizer().decode(out.generated_ids, decode);
      out.parsed = post_process_generation(out.text, r.answer_task.value_or(r.task),
                                           ImageSize{c.decoded.width, c.decoded.height});
    }
  }

  EngineOptions options_;
  std::unique_ptr<Model> model_;              // loaded on first run()
  std::unique_ptr<GenerationConfig> config_;  // the checkpoint's, with options_' overrides
  std::unique_ptr<Tokenizer> own_tokenizer_;  // options_.tokenizer_dir's, else the model's
};

}  // namespace
}  // namespace celeriac::florence

extern "C" __attribute__((visibility("default"))) celeriac::florence::Engine*
celeriac_florence_create_engine(const celeriac::florence::EngineOptions* options,
                                std::string* error) {
  try {
    return new celeriac::florence::FlorenceEngine(*options);
  } catch (const std::exception& e) {
    if (error) *error = e.what();
    return nullptr;
  }
}
