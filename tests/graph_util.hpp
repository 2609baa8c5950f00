// Shared by the graph tests: the four ways a layer graph is built around the same layer.
#pragma once

#include <vector>

#include "graph/graph.hpp"

namespace graph_test {

// Recompute off/on x LM head off/on, in that order.
inline std::vector<flopscope::GraphOptions> option_sets() {
  std::vector<flopscope::GraphOptions> v;
  for (bool recompute : {false, true})
    for (bool head : {false, true}) {
      flopscope::GraphOptions o;
      o.recompute = recompute;
      o.include_head = head;
      v.push_back(o);
    }
  return v;
}

}  // namespace graph_test
