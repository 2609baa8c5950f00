// The FP8 lowering, applied to a built graph (--precision fp8).
#include <set>

#include <fmt/format.h>

#include "graph/blocks.hpp"
#include "util/error.hpp"

namespace flopscope::graph_detail {

// --precision fp8: gives every linear-layer GEMM of the layer FP8 E4M3 operands. cuBLASLt's
// FP8 GEMMs on Hopper take both operands K-major ("TN"): in our row-major terms A stored
// (m, k) and B stored (n, k). Each operand gets a copy in that layout -- cast as is, or cast
// and transposed -- made by a cast_fp8 op just before the GEMM, unless the same copy was made
// earlier and its source has not been written since. Other ops run in bf16.
void lower_linear_gemms_to_fp8(LayerGraph& g) {
  const LayerShape& s = g.shape;
  const int64_t T = s.tokens();
  if (T % 16 != 0 || s.d_model % 16 != 0 || s.d_ff % 16 != 0)
    throw UsageError(fmt::format("--precision fp8: cuBLASLt's FP8 GEMMs need tokens (batch x seq), d_model and d_ff to "
                                 "be multiples of 16; this layer has {}, {} and {}",
                                 T, s.d_model, s.d_ff));
  const int64_t dq = s.n_heads * s.d_head, dkv = s.kv_heads() * s.d_head;
  if (dq % 16 != 0 || dkv % 16 != 0)
    throw UsageError(fmt::format("--precision fp8: cuBLASLt's FP8 GEMMs need the query width (heads x d_head) and the "
                                 "key/value width (kv heads x d_head) to be multiples of 16; this layer has {} and {}",
                                 dq, dkv));
  if (s.moe() && (s.d_ff_expert % 16 != 0 || (s.n_shared * s.d_ff_shared) % 16 != 0))
    throw UsageError(fmt::format("--precision fp8: cuBLASLt's FP8 GEMMs need the expert width (and the shared experts' "
                                 "width) to be multiples of 16; this layer has {} and {}",
                                 s.d_ff_expert, s.n_shared * s.d_ff_shared));
  const double eb = static_cast<double>(element_bytes(Precision::bf16));
  std::vector<Op> out;
  std::set<std::string> valid;  // copies whose source has not been written since they were made
  auto written = [&](const std::string& t) {
    valid.erase(t + ".e4m3");
    valid.erase(t + ".e4m3t");
  };
  for (Op op : g.ops) {
    if (op.impl == OpImpl::gemm && op.gemm.linear && op.group == Group::layer && !op.gemm.keep_precision) {
      GemmSpec& gs = op.gemm;
      const bool grouped = gs.grouped != Grouped::none;
      FLOPSCOPE_CHECK((gs.batch == 1 || grouped) && gs.repeat == 1 && gs.a_offset == 0 && gs.b_offset == 0,
                      op.name + ": linear GEMMs are plain or grouped");
      // Operand `src` stored (rows, cols), or `batch` such matrices one after another (each
      // transposed on its own); K-major when its columns are k.
      // A cast of one of the GEMM's operands splits over tp as the operand does: along a feature
      // dimension where it spans the one the weight's split divides, else along the tokens
      // (OpSplit); a weight's own cast as the weight.
      using Dim = LayerGraph::Dim;
      const Dim split = g.split_dim(gs);
      // By value: the copies below append to g.tensors, which moves them.
      const std::string weight = g.gemm_weight(gs).name;
      const WeightSplit weight_split = g.gemm_weight(gs).split;
      auto operand_split = [&](const std::string& src, Dim d1, Dim d2) {
        if (src == weight) return weight_split == WeightSplit::replicated ? OpSplit::replicated : OpSplit::features;
        return split == d1 || split == d2 ? OpSplit::features : OpSplit::sequence;
      };
      const OpSplit a_split = operand_split(gs.a, Dim::m, Dim::k), b_split = operand_split(gs.b, Dim::k, Dim::n);
      auto copy = [&](const std::string& src, int64_t rows, int64_t cols, bool transpose, const char* which,
                      OpSplit cast_split, int64_t batch = 1) {
        const std::string name = src + (transpose ? ".e4m3t" : ".e4m3");
        if (!valid.count(name)) {
          bool exists = false;
          for (const auto& t : g.tensors) exists |= t.name == name;
          if (!exists) {
            g.tensors.push_back({name, TensorRole::fp8_copy, transpose ? std::vector<int64_t>{batch * cols, rows}
                                                                         : std::vector<int64_t>{batch * rows, cols}});
            // A copy is split as its source is.
            const TensorSpec& from = g.tensor(src);
            TensorSpec& to = g.tensors.back();
            to.split = from.split, to.expert = from.expert, to.source = src, to.transposed = transpose;
          }
          Op c;
          c.name = op.name + "." + which;
          c.phase = op.phase;
          c.group = op.group;
          c.kind = OpKind::elementwise;
          c.impl = OpImpl::cast_fp8;
          c.split = cast_split;
          c.routed = op.routed && src != weight;  // the dispatched rows' casts, not the experts' weights'
          c.precision = Precision::fp8;
          c.inputs = {src};
          c.outputs = {name};
          c.batch = batch;
          c.rows = rows;
          c.cols = cols;
          c.transpose = transpose;
          const double n = static_cast<double>(batch) * static_cast<double>(rows) * static_cast<double>(cols);
          c.flops = c.model_flops = flop_convention::kCastFp8 * n;
          c.min_bytes = n * (eb + 1);
          out.push_back(std::move(c));
          valid.insert(name);
        }
        return name;
      };
      // A: (m, k) as stored unless trans_a (stored (k, m)); B: (n, k) when trans_b, else stored (k, n).
      // Grouped (the routed experts): the stacked operands are cast whole (m or k the rows of all
      // experts); the experts' own weights (m_rows: B, E of them) each in its K-major layout.
      const int64_t experts = gs.grouped == Grouped::m_rows ? gs.batch : 1;
      gs.a = gs.trans_a ? copy(gs.a, gs.k, gs.m, true, "cast_a", a_split) : copy(gs.a, gs.m, gs.k, false, "cast_a", a_split);
      gs.b = gs.trans_b ? copy(gs.b, experts * gs.n, gs.k, false, "cast_b", b_split)
                        : copy(gs.b, gs.k, gs.n, true, "cast_b", b_split, experts);
      gs.trans_a = false;
      gs.trans_b = true;
      gs.lda = gs.k;
      gs.ldb = gs.k;
      op.precision = Precision::fp8;
      const double m = static_cast<double>(gs.m), n = static_cast<double>(gs.n), k = static_cast<double>(gs.k);
      const double members = grouped ? static_cast<double>(gs.batch) : 1.0;
      op.min_bytes = gs.grouped == Grouped::m_rows ? (m * k + members * n * k) + m * n * eb * (gs.beta != 0 ? 2 : 1)
                     : gs.grouped == Grouped::k_rows
                         ? (m * k + n * k) + members * m * n * eb * (gs.beta != 0 ? 2 : 1)
                         : (m * k + n * k) * 1 + m * n * eb * (gs.beta != 0 ? 2 : 1);
    } else {
      op.precision = Precision::bf16;
    }
    if (op.impl == OpImpl::gemm) written(op.gemm.c);
    for (const auto& t : op.outputs) written(t);
    out.push_back(std::move(op));
  }
  g.ops = std::move(out);
}

}  // namespace flopscope::graph_detail
