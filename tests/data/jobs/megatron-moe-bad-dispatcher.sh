#!/bin/bash
# A mixture of experts with a token dispatcher Megatron Core does not have (written for the tests).
torchrun --nproc_per_node 8 pretrain_gpt.py --num-layers 2 --hidden-size 512 --num-attention-heads 8 \
  --seq-length 1024 --micro-batch-size 1 --global-batch-size 8 --bf16 \
  --tokenizer-type NullTokenizer --vocab-size 1000 \
  --num-experts 8 --moe-router-topk 2 --moe-token-dispatcher-type alltoall2 --expert-model-parallel-size 8
