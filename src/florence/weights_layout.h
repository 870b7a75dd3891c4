// The canonical tensor names the model code uses, whatever layout a checkpoint file has. Canonical
// = Microsoft's remote-code names and shapes (florence2.md section 9.1, Appendix A), e.g.
// `image_projection` is [C_in, P_out]. Native transformers names map onto them (section 9.4).
// Also: the full list of tensors (with shapes) that a configuration implies.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "florence/config.h"

namespace celeriac::florence {

struct ExpectedTensor {
  std::string name;            // canonical name
  std::vector<int64_t> shape;  // shape the configuration implies
};

// Every tensor a Florence-2 model of this configuration reads, in module order. The embedding has
// config.text.vocab_size rows. Includes the four tied embedding names, final_logits_bias and the
// temporal table (the loader fills those in when a file lacks them).
std::vector<ExpectedTensor> expected_tensors(const Florence2Config& config);

// The tied embedding names, in the order the loader looks for one that is present (9.3).
const std::vector<std::string>& tied_embedding_names();
inline constexpr std::string_view kFinalLogitsBias = "language_model.final_logits_bias";
inline constexpr std::string_view kTemporalEmbedding = "visual_temporal_embed.pos_idx_to_embed";
inline constexpr std::string_view kImageProjection = "image_projection";

// Canonical name of a native-layout tensor name, or nullopt when the name is not part of the
// model. (Native `...image_projection.weight` is [P, C]: the caller transposes it.)
std::optional<std::string> native_to_canonical(std::string_view native_name);

// Remote-layout tensors that exist in some files but are not used (deleted by the remote code).
bool is_ignored_remote_tensor(std::string_view name);

// Layout of a list of tensor names, from their prefixes; nullopt when neither matches.
std::optional<KeyLayout> detect_layout(const std::vector<std::string>& names);

}  // namespace celeriac::florence
