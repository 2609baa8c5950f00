#!/bin/bash
# A small Llama-style job for the tests: GQA, SwiGLU, RMSNorm, RoPE, fp8, 2 nodes x 4 GPUs.
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
NNODES=${NNODES:-"2"}
WORLD_SIZE=$(($GPUS_PER_NODE*$NNODES))
TP=2
PP=2
DTYPE="fp8"
LAYERS=8

DISTRIBUTED_ARGS=(
    --nproc_per_node $GPUS_PER_NODE
    --nnodes $NNODES
)

MODEL_ARGS=(
    --num-layers $LAYERS
    --hidden-size 1024
    --ffn-hidden-size 2816
    --num-attention-heads 16
    --group-query-attention
    --num-query-groups 4
    --seq-length 2048
    --max-position-embeddings 4096   # no table with RoPE
    --position-embedding-type rope
    --rotary-base 500000
    --swiglu
    --normalization RMSNorm
    --untie-embeddings-and-output-weights
    --disable-bias-linear
)

DTYPE_ARGS=(--bf16)
if [[ "$DTYPE" == "fp8" ]]; then
    DTYPE_ARGS+=("--fp8-format hybrid" "--fp8-amax-history-len 1024")
fi

torchrun ${DISTRIBUTED_ARGS[@]} pretrain_gpt.py \
    ${MODEL_ARGS[@]} \
    --tensor-model-parallel-size $TP --pipeline-model-parallel-size $PP \
    --sequence-parallel \
    --micro-batch-size 2 --global-batch-size 64 \
    --train-iters 1000 \
    --lr 3e-4 --min-lr 3e-5 --weight-decay 0.1 \
    --tokenizer-type NullTokenizer --vocab-size 32000 \
    --use-distributed-optimizer --overlap-grad-reduce --tp-comm-overlap \
    --recompute-granularity selective \
    ${DTYPE_ARGS[@]}
