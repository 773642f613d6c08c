"""Device selection: one clear line for each case."""
from shots.model.predictor import DeviceChoice, select_device


def test_cpu_forced_by_config():
    assert select_device("cpu", cuda_available=True) == DeviceChoice("cpu", "forced by config")


def test_auto_without_cuda():
    assert select_device("auto", cuda_available=False) == DeviceChoice("cpu", "auto: no CUDA device")


def test_auto_with_cuda():
    choice = select_device("auto", cuda_available=True, cuda_name=lambda i: "NVIDIA H100")
    assert choice == DeviceChoice("cuda:0", "auto: CUDA available, NVIDIA H100")


def test_cuda_requested_and_available():
    choice = select_device("cuda", cuda_available=True, cuda_name=lambda i: "NVIDIA H100")
    assert choice.device == "cuda:0" and choice.warning is None


def test_cuda_requested_but_not_available_warns_and_uses_cpu():
    choice = select_device("cuda", cuda_available=False)
    assert choice.device == "cpu"
    assert choice.warning == "device 'cuda' requested but CUDA is not available: using the CPU"


def test_missing_cuda_index_warns_and_uses_cpu():
    choice = select_device("cuda:3", cuda_available=True, cuda_count=1)
    assert choice.device == "cpu" and "does not exist" in choice.warning


def test_decoder_processes_for_auto_follow_the_model_s_device():
    from shots.frames.ffmpeg_pool import cpu_count
    from shots.engine import decoder_processes
    assert decoder_processes(3, "cuda") == 3 and decoder_processes(1, "cpu") == 1
    assert decoder_processes("auto", "cpu") == 1  # the CPU model needs the cores
    assert decoder_processes("auto", "cuda") == max(1, min(32, cpu_count() - 1))
