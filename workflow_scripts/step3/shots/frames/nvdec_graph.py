"""A session's conversion of full NVDEC batches captured once as a CUDA graph
and replayed: one launch instead of some sixty small kernels, each of which
needs the interpreter lock that eight session threads, the main thread and
the model's thread share (traced on the H200: conversion was 53 % of the
sessions' time, a few ms of it on the GPU).

The same kernels on the same static input, so the frames are the eager
conversion's: byte for byte on the H200 (test_nvdec_gpu.py, where a session's
conversion took 31 us a frame instead of 79 us). Off unless
STEP3_NVDEC_GRAPHS=1: in the engine (8 sessions, the model beside) the first
try hung, so it stays an experiment until the H200 shows it exact, alive and
faster there. A capture that fails leaves that session on the eager conversion."""
import os
import threading

from shots.frames.yuv_to_rgb import split_semiplanar

ENABLED = os.environ.get("STEP3_NVDEC_GRAPHS", "0") == "1"
WARMUP_RUNS = 2            # before capture (cuBLAS's workspace, the allocator's blocks)
_CAPTURE = threading.Lock()  # one capture at a time on the device


class GraphedConversion:
    """Static input batch -> static RGB output, for one video size."""

    def __init__(self, torch, convert, shape, dtype, height: int, shift: int, device):
        self.torch = torch
        self.input = torch.zeros(shape, dtype=dtype, device=device)
        self.key = (tuple(shape), dtype, id(convert.plan), height, shift)

        def run():
            planes = self.input
            if shift:
                planes = planes.to(torch.int32) & 0xFFFF  # P016's samples, unsigned
            return convert(*split_semiplanar(planes, height, shift))

        # A stream of its own (PyTorch's streams do not sync with the legacy
        # default stream), not the session's, which the decoder's own thread uses.
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        # capture_begin/end, not torch.cuda.graph(), whose entry synchronizes
        # the whole device, collects garbage and empties the allocator's cache
        # while the other sessions, their decoders and the model run (the
        # first try, with torch.cuda.graph(), hung the engine on the H200).
        with _CAPTURE, torch.cuda.stream(stream):
            for _ in range(WARMUP_RUNS):
                run()
            stream.synchronize()
            self.graph = torch.cuda.CUDAGraph()
            self.graph.capture_begin(capture_error_mode="thread_local")
            try:
                self.output = run()
            finally:
                self.graph.capture_end()
        torch.cuda.current_stream(device).wait_stream(stream)

    def __call__(self):
        """The converted frames of the batch in ``input``, in a tensor of their own."""
        self.graph.replay()
        return self.output.clone()


def graphed(session, torch, convert, shape, dtype, height: int, shift: int, device):
    """The session's GraphedConversion for this size (captured on first use;
    only the last size's is kept, which bounds the memory), or None when
    graphs are off or a capture failed in this session."""
    if not ENABLED or session.graph_failed:
        return None
    key = (tuple(shape), dtype, id(convert.plan), height, shift)
    if session.graph is not None and session.graph.key == key:
        return session.graph
    session.graph = None  # its memory goes back before the next capture
    try:
        session.graph = GraphedConversion(torch, convert, shape, dtype, height, shift, device)
    except Exception:
        session.graph_failed = True
        session.add("graph_failed", 1)
        return None
    session.add("graphs", 1)
    return session.graph
