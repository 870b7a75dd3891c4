#include "florence/weights_bf16.h"

#include "florence/weights_checkpoint.h"

namespace celeriac::florence {

nn::Bf16Weights bf16_copy(const Checkpoint& checkpoint, const nn::Tensor& w) {
  nn::Bf16Weights copy = nn::Bf16Weights::from(w);
  checkpoint.release_pages(w.values());
  return copy;
}

}  // namespace celeriac::florence
