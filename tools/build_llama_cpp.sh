#!/usr/bin/env bash
# Builds llama.cpp's tools (the peer we compare against) from the llama-cpp-python sdist on PyPI.
# Usage: tools/build_llama_cpp.sh [DEST]   (default DEST: /work/llama)
# Result: DEST/llama.cpp/build/bin/{llama-bench,llama-quantize,llama-perplexity,llama-completion,...}
# Native flags (GGML_NATIVE=ON). On CPUs with AMX, that build crashes in ggml's AMX path; pass
# LLAMA_NO_AMX=1 to compile with -mno-amx-tile -mno-amx-int8 -mno-amx-bf16.
set -euo pipefail
DEST=${1:-/work/llama}
VENV=$(cd "$(dirname "$0")" && pwd)/.venv
mkdir -p "$DEST" && cd "$DEST"
export PATH="$VENV/bin:$PATH"
pip install -q cmake ninja scikit-build-core
if ! ls llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
  pip download --no-deps --no-binary llama-cpp-python --no-build-isolation llama-cpp-python -d .
fi
if [ ! -d llama.cpp ]; then
  tar xzf llama_cpp_python-*.tar.gz
  mv llama_cpp_python-*/vendor/llama.cpp llama.cpp
fi
flags=""
[ "${LLAMA_NO_AMX:-0}" = 1 ] && flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake -S llama.cpp -B llama.cpp/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags"
cmake --build llama.cpp/build -j "$(nproc)" --target llama-bench llama-quantize llama-perplexity \
  llama-completion llama-tokenize llama-simple llama-gguf llama-imatrix
ls llama.cpp/build/bin
