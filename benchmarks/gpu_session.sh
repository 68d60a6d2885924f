#!/usr/bin/env bash
# The GPU checks in one call, for a session lent a GPU machine (CONTRIBUTING: "On a lent GPU").
#
#   bash benchmarks/gpu_session.sh prepare   # here: wheels the GPU image lacks + the 1080p clip
#   bash benchmarks/gpu_session.sh run       # there, from the repo's root, with .gpu carried
#
# `prepare` puts PyAV's and facenet-pytorch's wheels (for Python 3.12, the image's) and the
# clip from ../shared into .gpu/ (git-ignored through .git/info/exclude; ~40 MB, which with
# the checkout stays under what a call may carry). `run` installs the wheels into /tmp/site
# and writes, under $OUT (else /tmp/gpu-out): the GPU's name, the CUDA tests
# (tests/test_gpu.py, tests/test_crops.py), benchmarks/batch_detect.py and
# benchmarks/gpu_throughput.py --profile, as JSON and text. Budgeted for 9 minutes on an H200
# with 16 cores; each step has its own time limit so that a slow one leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
CLIP_NAME=facenet_pytorch_video.mp4

prepare() {
    grep -qx "/$GPU_DIR/" .git/info/exclude 2>/dev/null || echo "/$GPU_DIR/" >> .git/info/exclude
    mkdir -p "$GPU_DIR/whl"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$GPU_DIR/whl" "av>=12" "facenet-pytorch==2.5.3"
    cp "../shared/data/media/videos/$CLIP_NAME" "$GPU_DIR/"
    du -sh "$GPU_DIR"
}

run() {
    local out=${OUT:-/tmp/gpu-out}
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$GPU_DIR"/whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    local clip="$GPU_DIR/$CLIP_NAME"
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
      python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"; } \
        2>&1 | tee "$out/machine.txt"
    timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_crops.py \
        2>&1 | tee "$out/tests.txt"
    timeout 330 python3 benchmarks/gpu_throughput.py "$clip" --profile \
        --json "$out/gpu_throughput.json" 2>&1 | tee "$out/gpu_throughput.txt"
    timeout 90 python3 benchmarks/batch_detect.py "$clip" --json "$out/batch_detect.json" \
        2>&1 | tee "$out/batch_detect.txt"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash benchmarks/gpu_session.sh prepare|run" >&2; exit 2 ;;
esac
