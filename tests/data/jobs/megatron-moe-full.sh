#!/bin/bash
# A DeepSeek-style mixture of experts in Megatron Core's flags (written for the tests).
torchrun --nproc_per_node 8 pretrain_gpt.py --num-layers 4 --hidden-size 1024 --num-attention-heads 16 \
  --ffn-hidden-size 4096 --swiglu --seq-length 1024 --micro-batch-size 1 --global-batch-size 8 --bf16 \
  --tokenizer-type NullTokenizer --vocab-size 1000 \
  --num-experts 64 --moe-router-topk 6 --moe-ffn-hidden-size 1408 \
  --moe-shared-expert-intermediate-size 2816 --moe-layer-freq "([0]*1+[1]*3)" \
  --moe-router-score-function sigmoid --moe-router-num-groups 8 --moe-router-group-topk 4 --moe-router-topk-scaling-factor 2.5 \
  --moe-aux-loss-coeff 1e-3 --moe-expert-capacity-factor 1.0 --moe-pad-expert-input-to-capacity \
  --moe-grouped-gemm --moe-token-dispatcher-type alltoall --overlap-moe-expert-parallel-comm \
  --expert-model-parallel-size 8 --expert-tensor-parallel-size 1
