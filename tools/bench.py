"""--benchmark N: the speed of one LabOR iteration, on random tensors at the configured resolution.

    python train.py --benchmark 20 --model deeplabv2 --preset paper --amp

Trains nothing and reads no data: it times train.py's own `train_step` (A, B, D and D_aux, every loss, as SPL
after labelling) and prints one JSON line: iterations/s, images/s, peak memory, achieved TFLOP/s (counted with
torch.utils.flop_counter) and the fraction of the device's dense bf16 peak; with --profile, the operators that
take the most time.
"""
import argparse
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

import data
import labor
from tools.distributed import wrap_distributed
from tools.flags import as_iterations
from tools.runtime import peak_memory_mb

PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0}  # dense, no sparsity


def benchmark(args, rt, build_models, build_optimisers, train_step):
    """Times args.benchmark iterations of `train_step` after 3 warm-up iterations and prints one JSON line. The
    models and optimisers come from train.py's own builders, so the benchmark measures exactly what a run does."""
    # the heaviest iteration: every model of LabOR in one step (the staged schedule runs B in a stage of its own)
    args = argparse.Namespace(**{**vars(args), "mode": args.mode if args.mode in ("spl", "ppl") else "spl",
                                 "schedule": "joint"})
    real = args.data == "gta5-cityscapes" or args.preset == "paper"
    num_classes = len(data.Classes(args.classes).names) if args.data == "folder" and args.classes else \
        19 if real or args.data == "folder" or args.scenes == "long-tail" else len(data.SYNTHETIC_CLASSES)
    if real:
        (ws, hs), (wt, ht) = data.real_sizes(args.preset, args.source_size, args.target_size)
    else:
        (hs, ws), (ht, wt) = (args.size,) * 2
    net = {k: m.to(rt.device, memory_format=rt.memory_format)
           for k, m in build_models(args, num_classes).items()}
    net = wrap_distributed(rt, net)
    opt = build_optimisers(args, net)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    theta = torch.full((num_classes,), labor.IAST_THETA0, device=rt.device)
    g = torch.Generator().manual_seed(args.seed)
    b = args.batch_size
    x_s = torch.rand(b, 3, hs, ws, generator=g).to(rt.device)
    y_s = torch.randint(num_classes, (b, hs, ws), generator=g).to(rt.device)
    x_t = torch.rand(b, 3, ht, wt, generator=g).to(rt.device)
    y_t = torch.randint(num_classes, (b, ht, wt), generator=g)
    y_t[torch.rand(b, ht, wt, generator=g) > 0.022] = labor.IGNORE_INDEX   # SPL-like sparse target labels
    batch_s, batch_t, y_t = (x_s, y_s), (x_t, torch.arange(b)), y_t.to(rt.device)

    def step():
        nonlocal theta
        _, theta = train_step(args, net, opt, theta, batch_s, batch_t, y_t, scaler, rt)

    sync = torch.cuda.synchronize if rt.device.type == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    sync()
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rt.device)
    t0 = time.perf_counter()
    for _ in tqdm(range(args.benchmark), desc="benchmark", disable=rt.quiet):
        step()
    sync()
    seconds = time.perf_counter() - t0
    its = args.benchmark / seconds
    name = torch.cuda.get_device_name(rt.device) if rt.device.type == "cuda" else platform.processor() or "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    tflops = flops * its / 1e12
    result = {"device": name, "world": rt.world, "model": args.model, "amp": str(rt.amp_dtype), "classes": num_classes,
              "source_hw": [hs, ws], "target_hw": [ht, wt], "batch_size": b, "iterations": args.benchmark,
              "iters_per_second": its, "images_per_second": its * 2 * b * rt.world,
              "peak_memory_gib": peak_memory_mb(rt.device) / 1024, "tflop_per_iteration": flops / 1e12,
              "achieved_tflops": tflops, "peak_tflops": peak,
              "fraction_of_peak": tflops / peak if peak else None}
    if args.profile:
        result["profile"] = top_operators(step, sync, rt.device)
    if rt.rank == 0:
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


# ------------------------------------------------------------------------------------------ python -m tools.bench --check

PAPER_RUN = {"A iteration": 250000, "B iteration": 125000, "selection per image": 2975, "evaluation per image": 500}


def check(device="auto", tiny=False, out="bench_check.json", timeout=3600):
    """Before a 250k-iteration paper run, on this machine's device, with train.py as a command (a black box): (a) the
    paper preset's benchmark in fp32 and with --amp (bf16), with the profile's top operators; (b) a short SPL run
    (DeepLab-V2, synthetic data at the paper's target resolution) through B, selection, evaluation, stopped by
    SIGTERM after its labelling round and resumed; (c) the paper run's hours, stage by stage, at (b)'s rates. tiny:
    every part shrunk to a minute or two on a 2-core CPU (how the tests run it). Prints a report, writes it as JSON."""
    here = Path(__file__).resolve().parents[1]
    train = [sys.executable, str(here / "train.py"), "--device", device]
    model = ["--model", "tiny", "--size", "32", "64", "--batch-size", "2"] if tiny else ["--preset", "paper"]

    def run(*words):
        done = subprocess.run(train + list(words), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"train.py {' '.join(words)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return done.stdout

    report = {"device": device, "tiny": tiny, "benchmark": {                    # (a) the benchmark, fp32 and bf16
        name: json.loads(run(*model, "--benchmark", "3" if tiny else "20", "--profile", "--quiet", *amp).splitlines()[-1])
        for name, amp in (("fp32", []), ("bf16", ["--amp"]))}}
    with tempfile.TemporaryDirectory() as tmp:                                # (b) a short run, stopped, resumed
        folder, t0 = Path(tmp) / "spl", time.perf_counter()
        cmd = train + ["--mode", "spl", *(["--model", "tiny"] if tiny else ["--preset", "paper"]), "--size",
                       *(["32", "64"] if tiny else ["512", "1024"]), "--n-source", "4", "--n-target", "4", "--n-val",
                       "2", "--batch-size", "1", "--iters", "24" if tiny else "40", "--save-every", "1", "--quiet",
                       "--out", str(folder)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not (folder / "selection.pt").exists() and proc.poll() is None:   # after its labelling round
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=timeout)[1]
        if proc.returncode not in (0, 143):
            raise RuntimeError(f"the short run did not stop on SIGTERM with a checkpoint (exit {proc.returncode}):\n"
                               f"{err[-2000:]}")
        run("--resume", str(folder), "--quiet")
        m = json.loads((folder / "metrics.json").read_text())
    s, a = m["stage_seconds"], m["args"]                                       # (c) the paper's run, at (b)'s rates
    per = {"A iteration": s["adaptation"] / a["iters"],
           "B iteration": s["selector"] / max(as_iterations(a["selector_iters"], a["iters"]), 1),
           "selection per image": s["selection"] / a["n_target"], "evaluation per image": s["evaluation"] / a["n_val"]}
    estimate = {f"{k} x {n:,}": per[k] * n for k, n in PAPER_RUN.items()}
    report.update(short_run={"stopped_with": proc.returncode, "resumed_to": m["iters"], "miou": m["miou"],
                             "stage_seconds": s, "wall_seconds": time.perf_counter() - t0, "command": " ".join(cmd[1:])},
                  per_unit_seconds=per, estimate_seconds={**estimate, "total": sum(estimate.values())},
                  from_the_benchmark_seconds={k: 250000 / v["iters_per_second"] for k, v in report["benchmark"].items()})
    Path(out).write_text(json.dumps(report, indent=2))
    sr, lines = report["short_run"], [f"python -m tools.bench --check ({'tiny' if tiny else 'the paper preset'})"]
    for k, v in report["benchmark"].items():
        top = ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in v["profile"][:3])
        lines.append(f"  {k} on {v['device']}: {v['iters_per_second']:.2f} it/s, {v['peak_memory_gib']:.2f} GiB peak, "
                     f"{v['achieved_tflops']:.2f} TFLOP/s; top operators: {top}")
    lines += [f"  short SPL run: stopped by SIGTERM (exit {sr['stopped_with']}), resumed to iteration "
              f"{sr['resumed_to']}, mIoU {100 * sr['miou']:.1f}, {sr['wall_seconds']:.0f} s",
              "  the paper's run (250k iterations), at the short run's rates: " +
              ", ".join(f"{k} {v / 3600:.1f} h" for k, v in report["estimate_seconds"].items())]
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m tools.bench", description="Check a machine before the paper's run: "
                                "the benchmark (fp32, bf16), a short real run stopped and resumed, the run's hours.")
    p.add_argument("--check", action="store_true", required=True, help="run the check")
    p.add_argument("--tiny", action="store_true", help="shrink everything: a minute or two on a 2-core CPU")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto picks cuda when present")
    p.add_argument("--out", default="bench_check.json", help="where to write the report as JSON")
    a = p.parse_args()
    check(a.device, a.tiny, a.out)
