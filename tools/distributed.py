"""Several processes (torchrun): start-up, wrapping models in DDP, gathering selections, keeping replicas equal.

train.py runs unchanged on one process; these helpers are what changes when WORLD_SIZE > 1. Stage 0 wraps the
models, stage 2 gathers each rank's share of the selected pixels, stage 3 checks that every rank holds the
same weights before evaluating.

An error on one rank must not leave the others waiting in a collective until its timeout: the failing rank
publishes its message in the rendezvous store (publish_error), and every other rank prints the same message and
ends with the same exit code within a second (a watcher thread, or exit_if_a_peer_failed when a collective fails
first). Checks that only rank 0 makes are made collectively (on_rank0).
"""
import os
import signal
import sys
import threading
import time
from datetime import timedelta

import torch

from tools import Stopped, UsageError
from tools.checkpoint import error_message, state_digest
from tools.runtime import unwrap

_peers = {"store": None, "key": None, "world": 1, "published": False, "lock": threading.Lock(),
          "thread": None, "stop": threading.Event()}


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
    _watch_peers()
    return torch.distributed.get_rank(), world, f"cuda:{local}" if use_cuda else None


def _watch_peers():
    """A client of the rendezvous store of our own (a store is not ours to share between threads) and a thread that
    ends this process as soon as another rank has published an error."""
    try:
        _peers["store"] = torch.distributed.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                                     is_master=False, timeout=timedelta(seconds=10))
    except (KeyError, RuntimeError, ValueError):
        return  # not started by torchrun (or alike): a failed collective still ends the other ranks
    # torchrun's store outlives a restart of the workers: one key per attempt
    _peers["key"] = f"labor-reference/error/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    _peers["world"] = int(os.environ.get("WORLD_SIZE", "1"))
    _peers["stop"].clear()
    _peers["thread"] = threading.Thread(target=_watch, daemon=True, name="peer-errors")
    _peers["thread"].start()


def _watch():
    while not _peers["stop"].wait(0.05):
        failure = _read_failure()
        if failure is False:
            return  # the store is gone (its host ended): nothing more can come from it
        if failure:
            _exit_for_peer(*failure)
            return  # (only when the failure was this rank's own)


def stop_watching():
    """End the watcher thread and wait for it, before the interpreter shuts down. The watcher spends its time in
    store calls, which release the GIL inside C++; a daemon thread that comes back from one while Python is
    finalising is ended with pthread_exit, whose unwinding through pybind11's noexcept GIL guard calls
    std::terminate: SIGABRT ("terminate called without an active exception") after a run that succeeded."""
    thread = _peers["thread"]
    if thread is not None and thread is not threading.current_thread():
        _peers["stop"].set()
        thread.join()  # at most one store call: its timeout (10 s) bounds it when the store's host is gone
        _peers["thread"] = None


def _read_failure():
    """(exit code, message) published by a rank, None if none yet, False if the store cannot be reached."""
    store, key = _peers["store"], _peers["key"]
    try:
        if not store.check([key]):
            return None
        code, message = store.get(key).decode().split("|", 1)
        return int(code), message
    except Exception:  # noqa: BLE001 (the connection to a store whose host has ended fails in several ways)
        return False


def _exit_for_peer(code, message):
    with _peers["lock"]:
        if _peers["published"]:
            return  # this rank failed itself and reports its own error
        print(f"error: {message}", file=sys.stderr, flush=True)
        _gone()  # the failed rank waits for this before it ends (see _leave)
        os._exit(code)  # this rank may be blocked in a collective, which no exception would leave


def publish_error(message, code=2):
    """Called by a rank that stops with an error (main), before it exits: every other rank stops with it."""
    with _peers["lock"]:
        _peers["published"] = True
    if _peers["store"] is not None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the launcher ends the others: this one exits with its code
        try:
            _peers["store"].set(_peers["key"], f"{code}|{message}")
        except Exception:  # noqa: BLE001 (then the others see their collective fail, as before)
            pass


def exit_if_a_peer_failed(wait=3.0):
    """Called after an unexpected error (a collective that failed because a peer ended): if a peer published its
    error, print it and exit with its code, as the watcher would; otherwise return (the error is this rank's)."""
    if _peers["store"] is None or _peers["published"]:
        return
    deadline = time.time() + wait
    while time.time() < deadline:
        failure = _read_failure()
        if failure is False:
            return
        if failure:
            _exit_for_peer(*failure)
        time.sleep(0.05)


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
    """Runs work() (train.py's command line) and turns how it ends into what a user or a cluster expects:
    a SIGTERM / SIGINT stop exits 128 + n on every rank, rank 0 printing how to resume (the checkpoint is
    written); a user's mistake prints one `error: ...` line, exit 2, on every rank; a bug keeps its traceback."""
    try:
        work()
    except Stopped as e:  # SIGTERM / SIGINT: the checkpoint is written; 128 + n is the shell's convention
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank stops; one message says so
            print(e, file=sys.stderr)
        sys.exit(128 + e.signum)
    except Exception as e:  # noqa: BLE001 (what is not a user's mistake is raised again below)
        message = error_message(e)
        if message is None:  # a bug here, or a collective that failed because another rank stopped
            exit_if_a_peer_failed()
            publish_error(f"another process failed ({type(e).__name__}); see its traceback", code=1)
            raise
        publish_error(message)  # every other rank prints it too and stops, rather than wait in a collective
        print(f"error: {message}", file=sys.stderr)
        e.__traceback__ = None  # frees the failed run's DataLoader workers now (a worker's error is in a cycle)
        _leave(2)
    finally:
        stop_watching()  # before Python shuts down (see stop_watching); _leave and the watcher use os._exit
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _gone(n=1):
    """Count this rank as ended (n=1) in the store, or just read the count (n=0); returns how many have ended."""
    try:
        return _peers["store"].add(_peers["key"] + "/gone", n)
    except Exception:  # noqa: BLE001 (the store's host has ended: nobody is left to wait for)
        return _peers["world"]


def _leave(code, wait=10.0):
    """Exit with code after an error. Under torchrun the rank that failed waits until every other rank has printed
    the message and counted itself out (_gone): when it ends first, torchrun stops the rest before their watchers
    have read the message. Then it ends at once (os._exit), without tearing the process group down: gloo, torn
    down after its peers are gone, can abort in C++ ("terminate called without an active exception")."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    if _peers["store"] is not None:
        deadline = time.time() + wait
        gone = _gone()
        while gone < _peers["world"] and time.time() < deadline:  # ranks that failed by themselves count too
            time.sleep(0.02)
            gone = _gone(0)
    os._exit(code)
