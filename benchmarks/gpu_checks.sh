#!/usr/bin/env bash
# The GPU checks in one command (CONTRIBUTING: "GPU checks").
#
#   bash benchmarks/gpu_checks.sh run        # on the GPU machine, from the checkout's root
#   bash benchmarks/gpu_checks.sh prepare    # first, where the GPU machine has no network or
#                                            # no ../shared: wheels + the 1080p clip into .gpu/
#
# `prepare` puts PyAV's and facenet-pytorch's wheels (for Python 3.12) and the clip from
# ../shared into .gpu/ (git-ignored through .git/info/exclude; ~40 MB), to copy along with the
# checkout. `run` installs those wheels into /tmp/site when .gpu/ holds them, and writes under
# $OUT (else /tmp/gpu-out): the GPU's name, the CUDA tests (tests/test_gpu.py,
# tests/test_crops.py), benchmarks/batch_detect.py and benchmarks/gpu_throughput.py --profile,
# as JSON and text. Each step has its own time limit (about 9 minutes in all), so that a slow
# one leaves the others' results.
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
    if compgen -G "$GPU_DIR/whl/*.whl" > /dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$GPU_DIR"/whl/*.whl || exit 1
    fi
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    local clip="$GPU_DIR/$CLIP_NAME"
    [ -f "$clip" ] || clip="../shared/data/media/videos/$CLIP_NAME"
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
    *) echo "usage: bash benchmarks/gpu_checks.sh prepare|run" >&2; exit 2 ;;
esac
