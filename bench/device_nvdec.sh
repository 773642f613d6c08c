# NVDEC on the lent GPU machine in one call: the opt-in GPU tests first
# (correctness before speed), then the full-HD benchmark with its trace.
#
#   bash bench/device_nvdec.sh [variants]      # variants: bench_nvdec.py's, default cpu,nvdec
#
# Carried beside the checkout (git-ignored, filled by hand): what
# bench/device_env.sh needs, and .devcarry_nvdec/pnv.tar.xz, the
# pynvvideocodec 2.2.4 cp312 wheel unpacked (the PyNvVideoCodec folder and its
# libcudart; the wheel's ffmpeg sources, samples and benchmarks left out).
# Logs go to $OUT (the device tool's folder) or /tmp/nvdec-out. The GPU tests
# take about three minutes, the benchmark about 30 s to encode plus each
# variant's run (cpu ~70 s, nvdec ~45 s on the H200).
set -u
OUT=${OUT:-/tmp/nvdec-out}
mkdir -p "$OUT" /opt/pnv
tar xJf .devcarry_nvdec/pnv.tar.xz -C /opt/pnv || exit 1
# shellcheck source=/dev/null
source bench/device_env.sh >/dev/null || exit 1
export PYTHONPATH=/opt/pnv:$PYTHONPATH

# A test that hangs prints every thread's stack after 120 s (faulthandler);
# a crash of the library shows as "Fatal Python error" in the log.
(cd tests/step3 && timeout "${TESTS_S:-330}" python3 -u -m pytest -v -s --run-gpu -p no:cacheprovider \
    -o faulthandler_timeout=120 test_nvdec_gpu.py > "$OUT/gpu_tests.log" 2>&1
 echo "gpu tests exit $?" >> "$OUT/gpu_tests.log")
grep -E "PASSED|FAILED|ERROR|exit [0-9]|Fatal Python|^(sample|h264|hevc|vp9|av1|noisy|cut|bad|good)" "$OUT/gpu_tests.log"

timeout "${BENCH_S:-300}" python3 -u bench/bench_nvdec.py hd --variants "${1:-cpu,nvdec}" --trace > "$OUT/bench.log" 2>&1
echo "bench exit $?"
grep -E "^trace|^\|" "$OUT/bench.log"
