#!/usr/bin/env bash
# Issue 20's one GPU check, for a lent device machine (no package index there): builds the CUDA
# variant of the Python module with CMake, runs the GPU tests against the CPU engine and
# bench_cuda.py against cuDNN, and leaves the logs and bench/results/cuda.{md,json} under $OUT.
#
# That machine's image has python3 with PyTorch (CUDA), pybind11, pytest, numpy, nvcc, CMake and
# ninja, but no Eigen: carry the cmeel-eigen prefix. Here, once:
#   mkdir -p .gpu/eigen && cp -r .venv/lib/python3.11/site-packages/cmeel.prefix/{include,share} \
#     .gpu/eigen/ && echo /.gpu/ >> .git/info/exclude
# then run `bash bench/gpu_check.sh` with carry [".gpu"] and a timeout leaving room for a rerun
# (the build takes a few minutes on 16 cores; the tests and the benchmark about as long).
# Without a GPU it builds, the GPU tests skip and bench_cuda.py says so (a dry run here:
# PYTHON=.venv/bin/python bash bench/gpu_check.sh). The CPU engine it compares with is the AVX2
# variant, as in CI: the portable build rounds differently enough that one float32 layer-norm
# case (LSTM, proj_size, no bias) misses the 1e-5 tolerance by 1%.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
EIGEN=${EIGEN_PREFIX:-$PWD/.gpu/eigen}
PY=${PYTHON:-$(command -v python3)}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$OUT/nvidia-smi.txt"
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DRNNCORE_CUDA=ON \
  -DRNNCORE_CUDA_ARCHITECTURES="${RNNCORE_CUDA_ARCHITECTURES:-90}" -DRNNCORE_ISA_VARIANTS=ON \
  -DRNNCORE_BUILD_TESTS=OFF -DRNNCORE_BUILD_PYTHON=ON -DRNNCORE_BUILD_SERVE=OFF \
  -DPython_EXECUTABLE="$PY" -DEigen3_DIR="$EIGEN/share/eigen3/cmake" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" > "$OUT/build.log" 2>&1 &&
  cmake --build build/gpu --target _core _core_avx2 -j "$(nproc)" >> "$OUT/build.log" 2>&1 ||
  { tail -30 "$OUT/build.log"; exit 1; }
PKG=$(mktemp -d)
cp -r python/rnncore "$PKG/" && rm -f "$PKG"/rnncore/_core*.so && cp build/gpu/_core*.so "$PKG/rnncore/"
export PYTHONPATH="$PKG" PYTHONUNBUFFERED=1
"$PY" -c "import rnncore; print('rnncore', rnncore.__file__, 'cuda built', rnncore.cuda.is_built(),
      'available', rnncore.cuda.is_available())" 2>&1 | tee "$OUT/import.txt"
"$PY" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning tests/test_cuda.py tests/test_torch_cuda.py tests/test_cuda_arrays.py tests/test_cuda_ops.py tests/test_cuda_resident.py \
  2>&1 | tee "$OUT/tests.log" | tail -15
"$PY" bench/bench_cuda.py --out "$OUT/cuda" 2>&1 | tee "$OUT/bench.log" | tail -25
