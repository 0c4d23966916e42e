"""--benchmark N: the speed of one LabOR iteration, on random tensors at the configured resolution.

    python train.py --benchmark 20 --model deeplabv2 --preset paper --amp

Trains nothing and reads no data: it times train.py's own `train_step` (A, B, D and D_aux, every loss, as SPL
after labelling) and prints one JSON line: iterations/s, images/s, peak memory, achieved TFLOP/s (counted with
torch.utils.flop_counter) and the fraction of the device's dense bf16 peak; with --profile, the operators that
take the most time.
"""
import json
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

import data
import labor
import runs
from distributed import wrap_distributed
from runs import peak_memory_mb, setup_runtime

PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0}  # dense, no sparsity


def add_flags(p):
    g = p.add_argument_group("the speed benchmark (bench.py)")
    g.add_argument("--benchmark", type=runs.non_negative_int, default=0, metavar="N",
                   help="time N LabOR iterations (after a warm-up) on random tensors at the configured resolution "
                        "and print one JSON line: iterations/s, images/s, peak memory, achieved TFLOP/s; trains "
                        "nothing")
    g.add_argument("--profile", action="store_true",
                   help="--benchmark: also profile 5 iterations (torch.profiler) and add the operators that take the "
                        "most time, with their share of it, to the JSON line ('profile')")
    g.add_argument("--peak-tflops", type=runs.positive_float, default=None,
                   help="--benchmark: the device's peak TFLOP/s for the fraction-of-peak figure (default: looked up "
                        "by name)")


def benchmark(args, build_models, build_optimisers, train_step):
    """Times args.benchmark iterations of `train_step` after 3 warm-up iterations and prints one JSON line. The
    models and optimisers come from train.py's own builders, so the benchmark measures exactly what a run does."""
    setup_runtime(args)
    if args.mode not in ("spl", "ppl"):
        args.mode = "spl"  # the heaviest iteration: every model of LabOR ...
    args.schedule = "joint"  # ... in one step (the staged schedule runs B in a stage of its own: a cheaper step)
    real = args.data == "gta5-cityscapes" or args.preset == "paper"
    num_classes = 19 if real else len(data.SYNTHETIC_CLASSES)
    if real:
        (ws, hs), (wt, ht) = data.real_sizes(args.preset, args.source_size, args.target_size)
    else:
        (hs, ws), (ht, wt) = (args.size,) * 2
    net = {k: m.to(args.device, memory_format=args.memory_format)
           for k, m in build_models(args, num_classes).items()}
    net = wrap_distributed(args, net)
    opt = build_optimisers(args, net)
    scaler = torch.amp.GradScaler(args.device.type, enabled=args.amp_dtype == torch.float16)
    theta = torch.full((num_classes,), labor.IAST_THETA0, device=args.device)
    g = torch.Generator().manual_seed(args.seed)
    b = args.batch_size
    x_s = torch.rand(b, 3, hs, ws, generator=g).to(args.device)
    y_s = torch.randint(num_classes, (b, hs, ws), generator=g).to(args.device)
    x_t = torch.rand(b, 3, ht, wt, generator=g).to(args.device)
    y_t = torch.randint(num_classes, (b, ht, wt), generator=g)
    y_t[torch.rand(b, ht, wt, generator=g) > 0.022] = labor.IGNORE_INDEX   # SPL-like sparse target labels
    batch_s, batch_t, y_t = (x_s, y_s), (x_t, torch.arange(b)), y_t.to(args.device)

    def step():
        nonlocal theta
        _, theta = train_step(args, net, opt, theta, batch_s, batch_t, y_t, scaler)

    sync = torch.cuda.synchronize if args.device.type == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    sync()
    if args.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(args.device)
    t0 = time.perf_counter()
    for _ in tqdm(range(args.benchmark), desc="benchmark", disable=args.quiet or args.rank != 0):
        step()
    sync()
    seconds = time.perf_counter() - t0
    its = args.benchmark / seconds
    name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else platform.processor() or "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    tflops = flops * its / 1e12
    result = {"device": name, "world": args.world, "model": args.model, "amp": str(args.amp_dtype),
              "source_hw": [hs, ws], "target_hw": [ht, wt], "batch_size": b, "iterations": args.benchmark,
              "iters_per_second": its, "images_per_second": its * 2 * b * args.world,
              "peak_memory_gib": peak_memory_mb(args.device) / 1024, "tflop_per_iteration": flops / 1e12,
              "achieved_tflops": tflops, "peak_tflops": peak,
              "fraction_of_peak": tflops / peak if peak else None}
    if args.profile:
        result["profile"] = top_operators(step, sync, args.device)
    if args.rank == 0:
        print(json.dumps(result))
    return result


def top_operators(step, sync, device, iterations=5, top=8):
    """The operators with the most time of their own over `iterations` steps, each with its share of the total
    (self CPU time; on a GPU, the self GPU time of their kernels): where an iteration's time goes."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(iterations):
            step()
        sync()
    averages = prof.key_averages()
    key = "self_cpu_time_total"
    if cuda:  # (self_cuda_time_total before torch 2.4)
        key = "self_device_time_total" if hasattr(averages[0], "self_device_time_total") else "self_cuda_time_total"
    # operator rows only: on a GPU their kernels are rows too, and counting both would count the time twice
    events = [e for e in averages if e.device_type == DeviceType.CPU and getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in events)
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [{"op": e.key, "share": getattr(e, key) / total} for e in events[:top]]
