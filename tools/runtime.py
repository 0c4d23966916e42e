"""The run's runtime: where and how it computes (device, precision, memory format, rank and world size: one small
object, made once by `setup`), and the seeded data stream a resumed run continues exactly. The method's functions
take a Runtime; their default is one CPU process in fp32, so a notebook calls them without any set-up.
"""
import functools
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)   # a cluster's pre-emption, Ctrl-C


@dataclass(frozen=True)
class Runtime:
    """Where a run computes. The method reads it (autocast, the memory format, its share of the images under
    torchrun); setup() makes the run's from its flags, once."""
    device: torch.device = torch.device("cpu")
    amp_dtype: torch.dtype = None                      # --amp: bf16 (or fp16 with a GradScaler); None: fp32
    memory_format: torch.memory_format = torch.contiguous_format
    rank: int = 0
    world: int = 1
    quiet: bool = False                                # no progress bars or log lines (every rank but 0)
    out: str = None                                    # the run folder (every rank's the same)


class InfiniteSampler(torch.utils.data.Sampler):
    """An endless, seeded stream of indices: epoch e is torch.randperm(n) seeded with (seed, e). It can start at
    any position, so a resumed run sees exactly the batches an uninterrupted one would; with several processes
    rank r takes every world-th index."""

    def __init__(self, n, seed, start=0, rank=0, world=1):
        self.n, self.seed, self.start, self.rank, self.world = n, seed, start, rank, world

    def __iter__(self):
        t = self.start * self.world + self.rank
        while True:
            epoch, pos = divmod(t, self.n)
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            yield int(torch.randperm(self.n, generator=g)[pos])
            t += self.world


def stream(dataset, args, rt, seed, start):
    """An endless iterator of batches moved to the device (start = samples already consumed by this rank)."""
    sampler = InfiniteSampler(len(dataset), seed, start, rt.rank, rt.world)
    # its own generator: a loader started draws from the global RNG, and a resumed run starts it at another moment
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True,
                                         num_workers=args.num_workers, pin_memory=rt.device.type == "cuda",
                                         persistent_workers=args.num_workers > 0, worker_init_fn=ignore_stop_signals,
                                         generator=torch.Generator().manual_seed(seed))
    for batch in loader:
        yield [t.to(rt.device, non_blocking=True) for t in batch]


def rank_share(dataset, args, rt):
    """This rank's share of a dataset (every world-th image), in order: selection and evaluation go through it."""
    indices = list(range(rt.rank, len(dataset), rt.world))
    return torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=args.batch_size,
                                       num_workers=args.num_workers, generator=torch.Generator(),  # (see stream)
                                       worker_init_fn=ignore_stop_signals)


def hash_seed(*numbers):
    """A stable seed from several integers (Python's hash() of a tuple is salted per process)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1)[0])


def setup(args, rank=0, world=1, local_device=None):
    """The run's Runtime, made once from its flags (rank, world and a torchrun rank's GPU come from
    distributed.init_distributed): the device, the threads, the precision, and the run folder's name, which every
    rank agrees on."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(local_device or ("cuda" if args.device == "auto" and torch.cuda.is_available()
                                           else ("cpu" if args.device == "auto" else args.device)))
    amp_dtype = None
    if args.amp:  # bf16 where the hardware has it (no scaler needed), fp16 with a GradScaler otherwise
        amp_dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    out = [args.out or f"runs/{args.mode}-{time.strftime('%Y%m%d-%H%M%S')}"]
    if world > 1:
        torch.distributed.broadcast_object_list(out, src=0)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return Runtime(device, amp_dtype, memory_format, rank, world, args.quiet or rank != 0, out[0])


def autocast(rt):
    """Mixed precision when --amp: bf16 where supported, else fp16 (then the GradScaler guards the gradients)."""
    return torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None)


def unwrap(m):
    """The plain module inside a DistributedDataParallel wrapper (or the module itself)."""
    return m.module if hasattr(m, "module") else m


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        import resource   # (not on Windows)
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # kilobytes on Linux: the peak RSS


def ignore_stop_signals(worker_id):
    """DataLoader workers: a cluster (or Ctrl-C) signals the whole process group; the main process decides when to
    stop and ends its workers itself, so they must not die under the batch it is waiting for."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


# ------------------------------------------------------------------------------------------------ stop signals

_received = [0]                                  # the signal that asked the run to stop (0: none)
_ended_with = [0]                                # the signal noted when the last run ended (by an error, too)


def stop_on_signal(run):
    """While `run` runs, SIGTERM and SIGINT only note the signal: the training loop looks at stop_requested at each
    iteration boundary, writes a checkpoint there and raises Stopped. A Ctrl-C after a noted signal acts at once,
    as it would without us; a second SIGTERM changes nothing (a cluster or an experiment may send one to every
    process of a job: the run still stops at its next iteration; SIGKILL is the way to end it at once). The previous
    handlers come back afterwards (notebooks and tests call run in this process); a signal that came too late to
    stop the run (during evaluation) is then handed to the previous handler if it is one of ours, not to Python's
    Ctrl-C default, so a lone run still ends.

    Python runs a handler once for signals that arrive together: two Ctrl-C pressed during one long operation (a
    forward pass of DeepLab, a checkpoint being written) reach `note` as one call. So the signals are counted where
    each of them lands, in C: signal.set_wakeup_fd writes one byte per signal to a socket, and `note` reads them."""
    @functools.wraps(run)
    def wrapper(*a, **k):
        if threading.current_thread() is not threading.main_thread():
            return run(*a, **k)  # only the main thread may set handlers; there the signals act as usual
        wakeup, counter = socket.socketpair()
        wakeup.setblocking(False)
        counter.setblocking(False)

        def note(signum, frame):
            try:
                arrived = counter.recv(4096).count(signum)   # this signal, and any that came with it
            except BlockingIOError:
                arrived = 1
            if signum == signal.SIGINT and (_received[0] or arrived > 1):   # a second Ctrl-C: what it does now
                signal.signal(signum, previous[signum] or signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            _received[0] = _received[0] or signum

        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        previous_fd = signal.set_wakeup_fd(wakeup.fileno(), warn_on_full_buffer=False)
        _received[0] = 0
        for s, handler in previous.items():
            if handler is not signal.SIG_IGN:  # e.g. SIGINT in a background job (`&`): it stays ignored
                signal.signal(s, note)
        try:
            result = run(*a, **k)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler or signal.SIG_DFL)
            signal.set_wakeup_fd(previous_fd)
            wakeup.close()
            counter.close()
            late, _received[0] = _received[0], 0
            _ended_with[0] = late
        if late and callable(previous[late]) and previous[late] is not signal.default_int_handler:
            previous[late](late, None)
        return result
    return wrapper


def signal_noted():
    """The signal a run in this process has noted and not yet acted on (0: none)."""
    return _received[0]


def signal_at_end():
    """The signal noted, not yet acted on, when the last run in this process ended (0: none), e.g. torchrun's stop
    of this rank while it waited in a collective that then failed."""
    return _ended_with[0]


def stop_requested(rt):
    """The signal received (0: none), agreed on by every rank, so that all of them stop at the same iteration."""
    signum = _received[0]
    if rt.world > 1:
        t = torch.tensor([signum], device=rt.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        signum = int(t.item())
    return signum
