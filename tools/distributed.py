"""Several processes (torchrun): start-up, wrapping models in DDP, gathering selections, keeping replicas equal.

train.py runs unchanged on one process; these helpers are what changes when WORLD_SIZE > 1. Stage 0 wraps the
models, stage 2 gathers each rank's share of the selected pixels, stage 3 checks that every rank holds the
same weights before evaluating.

An error on one rank must not leave the others waiting in a collective: that is torchrun's job. Its agent watches
the processes and, when one ends with an error, stops the others (SIGTERM, then SIGKILL) and names the first failure
("Root Cause") in its report; exit_cleanly lets a rank so stopped end quietly. Checks that only rank 0 makes are made
collectively (on_rank0), so that a mistake there is every rank's one-line error.
"""
import os
import sys
import time

import torch

from tools import Stopped, UsageError
from tools.checkpoint import error_message, state_digest
from tools.runtime import signal_at_end, unwrap


def init_distributed(args):
    """Under torchrun (WORLD_SIZE > 1): one process per GPU with NCCL, or per CPU process with gloo. Returns (rank,
    world, this rank's GPU or None), for runtime.setup."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, None
    use_cuda = args.device != "cpu" and torch.cuda.is_available()
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    return torch.distributed.get_rank(), world, f"cuda:{local}" if use_cuda else None


def on_rank0(rt, check, *a):
    """check(*a) runs on rank 0 only (e.g. the run folder); a UsageError it raises is raised on every rank, so no
    rank goes on to wait for one that has stopped."""
    if rt.world == 1:
        return check(*a)
    message = [None]
    if rt.rank == 0:
        try:
            check(*a)
        except UsageError as e:
            message = [str(e)]
    torch.distributed.broadcast_object_list(message, src=0)
    if message[0] is not None:
        raise UsageError(message[0])


def wrap_distributed(rt, net):
    if rt.world == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return {k: DDP(m, device_ids=ids) for k, m in net.items()}


def gather_dict(rt, d):
    """The union of every rank's dict (each rank selected labels for its own share of the images)."""
    if rt.world == 1:
        return d
    parts = [None] * rt.world
    torch.distributed.all_gather_object(parts, d)
    return {k: v for p in parts for k, v in p.items()}


def sync_buffers(rt, net):
    """Rank 0's buffers (batch-norm running statistics) to every rank. DDP broadcasts them only at the start of a
    forward, so after the last step each rank holds the statistics of its own last batch; afterwards every rank
    evaluates rank 0's model, the one that is saved."""
    if rt.world > 1:
        for m in net.values():
            for b in unwrap(m).buffers():
                torch.distributed.broadcast(b, src=0)


def ranks_agree(rt, net):
    """True when every process holds the same weights (their state_digest is gathered and compared); recorded in
    metrics.json as a check that distributed training kept the replicas identical. True for one process."""
    if rt.world == 1:
        return True
    digests = [None] * rt.world
    torch.distributed.all_gather_object(digests, state_digest(net))
    return len(set(digests)) == 1


def exit_cleanly(work):
    """Runs work() (train.py's command line) and turns how it ends into what a user or a cluster expects: a SIGTERM
    / SIGINT stop exits 128 + n, rank 0 printing how to resume (the checkpoint is written); a user's mistake prints
    one `error: ...` line and exits 2; a bug keeps its traceback. Under torchrun a rank whose collective fails because
    another rank ended is being stopped by torchrun's agent (its SIGTERM follows within the agent's monitor
    interval): it exits 128 + n without a traceback of its own, the other rank's message being the one to read."""
    try:
        work()
    except Stopped as e:  # SIGTERM / SIGINT: the checkpoint is written; 128 + n is the shell's convention
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank stops; one message says so
            print(e, file=sys.stderr)
        sys.exit(128 + e.signum)
    except Exception as e:  # noqa: BLE001 (what is not a user's mistake is raised again below)
        message = error_message(e)
        if message is None:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                if signal_at_end():   # stopped by torchrun's agent after a peer failed
                    os._exit(128 + signal_at_end())
                time.sleep(5.0)       # its SIGTERM may be on its way (the default action ends this process)
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            os._exit(2)   # without tearing gloo down after its peers are gone (it can abort in C++)
        e.__traceback__ = None  # frees the failed run's DataLoader workers now (a worker's error is in a cycle)
        sys.exit(2)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
