"""Several processes (torchrun): start-up, wrapping models in DDP, gathering selections, keeping replicas equal.

train.py runs unchanged on one process; these helpers are what changes when WORLD_SIZE > 1. Stage 0 wraps the
models, stage 2 gathers each rank's share of the selected pixels, stage 3 checks that every rank holds the
same weights before evaluating.
"""
import os

import torch

from runs import state_digest, unwrap


def init_distributed(args):
    """Under torchrun (WORLD_SIZE > 1): one process per GPU with NCCL, or per CPU process with gloo."""
    args.world = int(os.environ.get("WORLD_SIZE", "1"))
    args.rank = 0
    if args.world == 1:
        return
    use_cuda = args.device != "cpu" and torch.cuda.is_available()
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    args.rank = torch.distributed.get_rank()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        args.device = f"cuda:{local}"
    if args.rank != 0:
        args.quiet = True


def wrap_distributed(args, net):
    if args.world == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [args.device.index] if args.device.type == "cuda" else None
    return {k: DDP(m, device_ids=ids) for k, m in net.items()}


def gather_dict(args, d):
    """The union of every rank's dict (each rank selected labels for its own share of the images)."""
    if args.world == 1:
        return d
    parts = [None] * args.world
    torch.distributed.all_gather_object(parts, d)
    return {k: v for p in parts for k, v in p.items()}


def sync_buffers(args, net):
    """Rank 0's buffers (batch-norm running statistics) to every rank. DDP broadcasts them only at the start of a
    forward, so after the last step each rank holds the statistics of its own last batch; afterwards every rank
    evaluates rank 0's model, the one that is saved."""
    if args.world > 1:
        for m in net.values():
            for b in unwrap(m).buffers():
                torch.distributed.broadcast(b, src=0)


def ranks_agree(args, net):
    """True when every process holds the same weights (their state_digest is gathered and compared); recorded in
    metrics.json as a check that distributed training kept the replicas identical. True for one process."""
    if args.world == 1:
        return True
    digests = [None] * args.world
    torch.distributed.all_gather_object(digests, state_digest(net))
    return len(set(digests)) == 1
