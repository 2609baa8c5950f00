GPUS_PER_NODE=8
NUM_NODES=1
torchrun --nproc_per_node $GPUS_PER_NODE --nnodes $NUM_NODES pretrain_gpt.py \
  --num-layers 8 --hidden-size 512 --num-attention-heads 8 --seq-length 1024 \
  --tensor-model-parallel-size 8 --pipeline-model-parallel-size 4 \
  --micro-batch-size 1 --global-batch-size 8 --bf16 --tokenizer-type NullTokenizer --vocab-size 1000
