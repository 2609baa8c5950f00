#!/bin/bash
# A small job for the tests: 14 layers over pp 4 in chunks of 2 layers, which divide only with the
# embedding and the loss counted as layers (16 = 4 x 2 x 2: vpp 2), as the Llama 3.1 405B recipes run.
torchrun --nproc_per_node 8 pretrain_gpt.py \
    --num-layers 14 --hidden-size 1024 --ffn-hidden-size 2816 --num-attention-heads 16 \
    --seq-length 2048 --max-position-embeddings 2048 --position-embedding-type rope \
    --swiglu --normalization RMSNorm --untie-embeddings-and-output-weights --disable-bias-linear \
    --tensor-model-parallel-size 2 --pipeline-model-parallel-size 4 \
    --num-layers-per-virtual-pipeline-stage 2 \
    --account-for-embedding-in-pipeline-split --account-for-loss-in-pipeline-split \
    --micro-batch-size 1 --global-batch-size 16 --train-iters 100 \
    --tokenizer-type NullTokenizer --vocab-size 32000 --bf16 --use-distributed-optimizer
