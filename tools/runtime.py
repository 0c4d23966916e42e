"""The run's runtime: where and how it computes (device, precision, memory format, rank and world size: one small
object, made once by `setup`), and the seeded data stream a resumed run continues exactly. The method's functions
take a Runtime; their default is one CPU process in fp32, so a notebook calls them without any set-up.
"""
import signal
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
