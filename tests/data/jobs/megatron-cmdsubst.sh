#!/bin/bash
# Every way a script could run something. flopscope must run none of them: the files named
# here must never appear.
STAMP=$(touch CREATED_BY_COMMAND_SUBSTITUTION; echo 1)
OLD=`touch CREATED_BY_BACKTICKS`
source ./evil-settings.sh
. ./more-settings.sh
touch CREATED_BY_A_COMMAND
eval "touch CREATED_BY_EVAL"
LAYERS=$(cat layers.txt)
HOST=${MASTER_ADDR:-localhost}

torchrun --nproc_per_node 8 pretrain_gpt.py \
    --num-layers $LAYERS \
    --hidden-size 512 --num-attention-heads 8 --seq-length 1024 \
    --micro-batch-size 1 --global-batch-size 16 \
    --vocab-file gpt2-vocab.json --merge-file gpt2-merges.txt \
    --bf16 --save "$(mktemp -d CREATED_BY_SAVE_XXXX)"
