// src/backend/preflight: the widest layer that fits steps in whole kv groups, so the width it
// suggests is one --width accepts (grouped-query models keep whole kv heads and a whole d_ff).
#include <gtest/gtest.h>

#include "backend/preflight.hpp"
#include "graph/graph.hpp"
#include "model/model.hpp"

namespace flopscope {
namespace {

double bytes_at(const ModelConfig& full, const Fraction& w, int64_t batch, int64_t seq) {
  return build_layer_graph(layer_shape(scale_width(full, w), batch, seq), GraphOptions{}).tensor_bytes();
}

TEST(Preflight, WidestFittingGpt3IsTheHeadsThatFit) {
  const ModelConfig m = preset("gpt3-175b");
  const double usable = bytes_at(m, Fraction{48, 96}, 1, 2048);
  EXPECT_EQ(widest_fitting(m, 1, 2048, GraphOptions{}, usable).num, 48);
  EXPECT_EQ(widest_fitting(m, 1, 2048, GraphOptions{}, usable * 0.999).num, 47);
  EXPECT_EQ(widest_fitting(m, 1, 2048, GraphOptions{}, 1.0).num, 0);
}

TEST(Preflight, WidestFittingKeepsWholeKvGroups) {
  const ModelConfig m = preset("llama3.1-8b");  // 32 heads, 8 kv heads: groups of 4
  ASSERT_EQ(m.kv_heads(), 8);
  // Room for 2 groups (8 heads) and a little more, not for 3 groups.
  const double two = bytes_at(m, Fraction{8, 32}, 1, 512);
  const double three = bytes_at(m, Fraction{12, 32}, 1, 512);
  ASSERT_LT(two, three);
  const Fraction w = widest_fitting(m, 1, 512, GraphOptions{}, (two + three) / 2);
  EXPECT_EQ(w.num, 8);
  EXPECT_EQ(w.den, 32);
  const ModelConfig layer = scale_width(m, w);  // --width accepts what it suggests
  EXPECT_EQ(layer.n_heads, 8);
  EXPECT_EQ(layer.kv_heads(), 2);
}

TEST(Preflight, MessageNamesTheScaledLayer) {
  const ModelConfig m = preset("llama3.1-8b");
  const double two = bytes_at(m, Fraction{8, 32}, 1, 512);
  // available such that usable (0.9 of it) holds 2 groups but not the full layer.
  const Preflight p = preflight(m, Fraction{1, 1}, 1, 512, GraphOptions{}, two / 0.9 * 1.01);
  EXPECT_FALSE(p.fits);
  EXPECT_NE(p.message.find("--width 8/32 (8 heads, d_model 1024)"), std::string::npos) << p.message;
}

}  // namespace
}  // namespace flopscope
