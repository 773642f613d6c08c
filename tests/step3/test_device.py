"""Where the model runs and what that device can take, as properties over every
case: the device chosen exists and is the one asked for, a request that cannot
be met is said once, the batch grows with the memory and never past its cap.
Nothing here can see a GPU; where one is needed, torch is told about it."""
import pytest
import torch

from shots.model.device import (MAX_AUTO_BATCH_GPU, auto_batch, cuda_still_works, find_device, precision_for,
                                select_device)
from shots.model.failures import first_line, is_cuda_error, is_oom

# What each explicit request asks for (read from the request text by hand, not by the code under test).
ASKED_INDEX = {"cuda": 0, "cuda:0": 0, "cuda:1": 1, "cuda:3": 3}
REQUESTS = ["auto", "cpu", *ASKED_INDEX]
MACHINES = [(False, 0), (True, 1), (True, 2), (True, 4)]  # (CUDA available, device count)
CASES = [(request, available, count) for request in REQUESTS for available, count in MACHINES]


def choose(request, available, count, asked=None):
    """select_device with a name for each GPU that says which one it is."""
    def name(i):
        if asked is not None:
            asked.append(i)
        return f"Card-{i}"
    return select_device(request, cuda_available=available, cuda_count=count, cuda_name=name)


@pytest.mark.parametrize("request_, available, count", CASES)
def test_the_device_chosen_exists_and_the_reason_fits_one_line(request_, available, count):
    asked = []
    choice = choose(request_, available, count, asked)
    assert choice.device == "cpu" or choice.device in {f"cuda:{i}" for i in range(count)}
    assert all(i < count for i in asked)  # never asks torch about a device that isn't there
    assert choice.why and "\n" not in choice.why and "\n" not in (choice.warning or "")


@pytest.mark.parametrize("request_, available, count", CASES)
def test_a_gpu_is_used_exactly_when_one_fits_the_request(request_, available, count):
    choice = choose(request_, available, count)
    if request_ == "cpu" or not available:
        assert choice.device == "cpu"
    elif request_ == "auto":
        assert choice.device == "cuda:0"
    else:
        fits = ASKED_INDEX[request_] < count
        assert choice.device == (f"cuda:{ASKED_INDEX[request_]}" if fits else "cpu")


@pytest.mark.parametrize("request_, available, count", CASES)
def test_a_gpu_asked_for_and_not_given_is_one_warning_naming_the_request(request_, available, count):
    choice = choose(request_, available, count)
    denied = request_ in ASKED_INDEX and choice.device == "cpu"
    assert (choice.warning is not None) == denied
    if denied:
        assert f"'{request_}'" in choice.warning and choice.warning.endswith(": using the CPU")


@pytest.mark.parametrize("request_, available, count", [c for c in CASES if c[1] and c[0] != "cpu"])
def test_the_reason_names_the_gpu_it_runs_on_and_no_other(request_, available, count):
    choice = choose(request_, available, count)
    if choice.device != "cpu":
        index = int(choice.device.split(":")[1])
        names = {f"Card-{i}" for i in range(count)}
        assert [n for n in names if n in choice.why] == [f"Card-{index}"]


without_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@without_cuda
def test_on_a_machine_without_cuda_every_request_runs_on_the_cpu():
    for request in REQUESTS:
        choice = find_device(request)
        assert choice.device == "cpu"
        assert (choice.warning is not None) == (request in ASKED_INDEX)


def test_a_driver_failing_the_questions_leaves_the_cpu_and_says_why(monkeypatch):
    def broken():
        raise RuntimeError("CUDA driver error: invalid argument\nmore detail")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", broken)
    for request in ("auto", "cuda", "cuda:1"):
        choice = find_device(request)
        assert choice.device == "cpu"
        assert "(CUDA driver error: invalid argument)" in choice.warning and "more detail" not in choice.warning


def test_precision_is_fp32_unless_mixed_and_never_fp16_on_a_cpu():
    cpu, gpu = torch.device("cpu"), torch.device("cuda:0")
    assert precision_for(cpu, False) == precision_for(gpu, False) == "fp32"
    assert precision_for(gpu, True) == "fp16"
    assert precision_for(cpu, True) in ("bf16", "fp32")


def test_the_cpu_batch_is_one_window_whatever_the_precision():
    # README: "auto: 1 on CPU" (measured fastest on 2 cores)
    assert {auto_batch(torch.device("cpu"), p) for p in ("fp32", "bf16")} == {1}


GIB = 1 << 30


def gpu_batch(monkeypatch, free: int, precision: str) -> int:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 141 * GIB))
    return auto_batch(torch.device("cuda:0"), precision)


def test_the_gpu_batch_grows_with_free_memory_up_to_its_cap(monkeypatch):
    for precision in ("fp32", "fp16"):
        sizes = [gpu_batch(monkeypatch, free, precision) for free in (0, GIB // 4, GIB, 4 * GIB, 16 * GIB, 139 * GIB)]
        assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == MAX_AUTO_BATCH_GPU
        assert all(1 <= s <= MAX_AUTO_BATCH_GPU for s in sizes)
    # An H200 with its memory free takes the full batch (README: "the batch the engine picks (64)").
    assert gpu_batch(monkeypatch, 139 * GIB, "fp32") == 64
    # Half-precision activations are half the size: never a smaller batch.
    for free in (GIB, 2 * GIB, 4 * GIB):
        assert gpu_batch(monkeypatch, free, "fp16") >= gpu_batch(monkeypatch, free, "fp32")
    assert gpu_batch(monkeypatch, 2 * GIB, "fp16") > gpu_batch(monkeypatch, 2 * GIB, "fp32")


def test_the_gpu_batch_without_a_memory_reading_is_a_modest_one(monkeypatch):
    def unknown(device=None):
        raise RuntimeError("CUDA error: not supported")
    monkeypatch.setattr(torch.cuda, "mem_get_info", unknown)
    assert 1 < auto_batch(torch.device("cuda:0"), "fp32") < MAX_AUTO_BATCH_GPU


def test_a_device_that_cannot_run_anything_is_not_healthy():
    assert cuda_still_works(torch.device("cpu")) is False
    assert cuda_still_works(torch.device(f"cuda:{torch.cuda.device_count()}")) is False  # no such device


@without_cuda
def test_cuda_is_not_healthy_where_torch_cannot_reach_it():
    assert cuda_still_works(torch.device("cuda:0")) is False  # this torch has no CUDA: it raises


@pytest.mark.parametrize("error, oom, cuda", [
    (torch.cuda.OutOfMemoryError("Tried to allocate 2.00 GiB"), True, False),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 79.35 GiB total capacity)"), True, True),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False, True),
    (RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"), False, True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), False, True),
    (RuntimeError("the scripted graph broke"), False, False),
    (ValueError("Expected 3 color channels, got 4"), False, False),
])
def test_failures_are_told_apart(error, oom, cuda):
    assert is_oom(error) is oom and is_cuda_error(error) is cuda


def test_a_failure_is_told_in_one_short_line():
    assert first_line(RuntimeError("first\nsecond")) == "first"
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(KeyError()) == "KeyError"
    assert len(first_line(RuntimeError("x" * 5000))) <= 300


def test_decoder_processes_for_auto_follow_the_model_s_device(monkeypatch):
    from shots.frames import ffmpeg_source
    from shots.frames.ffmpeg_source import decoder_processes
    assert decoder_processes(3, "cuda") == 3 and decoder_processes(1, "cpu") == 1
    for cores, beside_a_gpu in ((1, 1), (2, 1), (16, 15), (33, 32), (128, 32)):
        monkeypatch.setattr(ffmpeg_source, "cpu_count", lambda: cores)
        assert decoder_processes("auto", "cpu") == 1  # the CPU model needs the cores
        # One core is the model's; at most 32 decoders.
        assert decoder_processes("auto", "cuda") == beside_a_gpu, cores
