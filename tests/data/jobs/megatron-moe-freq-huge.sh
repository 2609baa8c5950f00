#!/bin/bash
# A layer frequency past any integer (written for the tests): one clear line.
torchrun --nproc_per_node 8 pretrain_gpt.py --num-layers 4 --hidden-size 512 --num-attention-heads 8 \
  --seq-length 1024 --micro-batch-size 1 --global-batch-size 8 --bf16 --tokenizer-type NullTokenizer --vocab-size 1000 \
  --num-experts 8 --moe-layer-freq 99999999999999999999999
