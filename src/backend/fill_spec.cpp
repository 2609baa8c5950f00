#include "backend/backend.hpp"
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

}  // namespace flopscope
