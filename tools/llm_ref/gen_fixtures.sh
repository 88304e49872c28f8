#!/bin/sh
# Regenerates tests/fixtures/llm/* (run from the repository root after `make`).
set -e
PY=/usr/bin/python3
F=tests/fixtures/llm
$PY tools/llm_ref/qwen2_ref.py gen --arch qwen2 --out $F/qwen2_tiny --seed 1234
$PY tools/llm_ref/qwen2_ref.py gen --arch llama --out $F/llama_tiny --seed 77
$PY tools/llm_ref/qwen2_ref.py gen --arch qwen3 --out $F/qwen3_tiny --seed 303
$PY tools/llm_ref/qwen2_ref.py gen --arch llama3 --out $F/llama3_tiny --seed 31
# a model written by `deeprec llm init`, evaluated by the reference's own GGUF reader
build/deeprec llm init --arch qwen2 --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 300 \
    --context 128 --std 0.15 --seed 21 --out $F/qwen2_init.gguf.fixture
$PY tools/llm_ref/qwen2_ref.py eval --model $F/qwen2_init.gguf.fixture --out $F/qwen2_init.ref
