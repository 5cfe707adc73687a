#!/usr/bin/env bash
# The GPU check: the CUDA tests and the bench's CUDA part, on the machine's own PyTorch.
# Run from the repository root. Data: MODCLUST_DATA_MIRROR must point at a folder holding
# MNIST/raw/*.gz (default ../shared/data); the files are extracted into a fresh temporary root.
set -u
python3 -c 'import torch, torchvision, tqdm; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TQDM_DISABLE=1 PYTHONUNBUFFERED=1
export MODCLUST_DATA="${MODCLUST_DATA:-$(mktemp -d)}"
export MODCLUST_DATA_MIRROR="${MODCLUST_DATA_MIRROR:-../shared/data}"
echo "== CUDA tests"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_ensemble.py -k "not mnist" 2>&1 | tail -n 15
echo "== bench, CUDA part"
python3 benchmarks/bench.py --only cuda
