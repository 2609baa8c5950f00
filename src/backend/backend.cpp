#include "backend/backend.hpp"

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/random_fill.hpp"

namespace flopscope {

FillSpec fill_spec(const TensorSpec& t, int64_t vocab) {
  FillSpec f;
  const bool vector = t.shape.size() == 1;
  switch (t.role) {
    case TensorRole::input:
      f.scale = 1.0;  // layer input x and incoming gradient d.y: uniform in [-1, 1)
      break;
    case TensorRole::weight:
      if (t.name.find("gamma") != std::string::npos) {
        f.offset = 1.0;  // layernorm gains near 1
        f.scale = 0.1;
      } else if (vector) {
        f.scale = 0.1;  // biases and layernorm shifts
      } else {
        f.scale = 0.02 * 1.7320508075688772;  // uniform with standard deviation 0.02 (GPT-2/3 init)
      }
      break;
    case TensorRole::index:
      f.index_count = vocab;  // LM-head targets
      break;
    default:
      f.scale = 0;  // outputs: poisoned by the backend, not filled
      break;
  }
  return f;
}

void fill_input_sets(Backend& b, const LayerGraph& g, uint64_t seed,
                     const std::function<void(const TensorSpec&, uint64_t)>& fill_tensor) {
  for (int64_t s = g.options.input_sets - 1; s >= 0; --s) {
    b.use_input_set(s);
    for (const auto& t : g.tensors)
      if (s == 0 || is_filled(t.role)) fill_tensor(t, input_set_seed(seed, s));
  }
}

std::unique_ptr<Recording> Backend::capture(const std::function<void()>& /*body*/) {
  throw UsageError(fmt::format("--cuda-graph: the {} backend cannot record the layer; CUDA graphs need --backend cuda",
                               name()));
}

}  // namespace flopscope
