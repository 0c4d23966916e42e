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
import time

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
    num_classes = 19 if real else len(data.SYNTHETIC_CLASSES)
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
    result = {"device": name, "world": rt.world, "model": args.model, "amp": str(rt.amp_dtype),
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


# ------------------------------------------------------------------------------------------------ python bench.py --check

PAPER_RUN = {"iters": 250000, "warmup": 125000, "selector_iters": 125000, "target_images": 2975, "val_images": 500}


def check(device="auto", tiny=False, out="bench_check.json", timeout=3600):
    """Before a 250k-iteration paper run: on this machine's device, (a) the paper preset's benchmark in fp32 and with
    --amp (bf16), with the profile's top operators; (b) a short real run (SPL, DeepLab-V2, synthetic data at the
    paper's target resolution) through B, selection, evaluation, a checkpoint, a stop by SIGTERM and --resume;
    (c) the wall time of the paper's run, stage by stage, scaled from (b). tiny: every part shrunk so that the whole
    check takes a minute or two on a 2-core CPU (how the tests run it). Prints a report and writes it as JSON."""
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path
    here = Path(__file__).resolve().parent
    train = [sys.executable, str(here.parent / "train.py"), "--device", device]
    model = ["--model", "tiny", "--size", "32", "64", "--batch-size", "2"] if tiny else \
        ["--preset", "paper", "--model", "deeplabv2"]
    report = {"device": device, "tiny": tiny, "benchmark": {}}

    def run(cmd, what):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {done.returncode}): {' '.join(cmd[1:])}\n{done.stderr[-2000:]}")
        return done.stdout

    for name, amp in (("fp32", []), ("bf16", ["--amp"])):                    # (a) the benchmark, fp32 and bf16
        line = run(train + model + ["--benchmark", "3" if tiny else "20", "--profile", "--quiet", *amp],
                   f"the {name} benchmark").strip().splitlines()[-1]
        report["benchmark"][name] = json.loads(line)
    with tempfile.TemporaryDirectory() as tmp:                                # (b) a short real run, stopped, resumed
        size = ["--size", "32", "64"] if tiny else ["--size", "512", "1024"]
        n = ["--n-source", "4", "--n-target", "4", "--n-val", "2"]
        folder = Path(tmp) / "spl"
        cmd = train + ["--mode", "spl", "--data", "synthetic", *(["--model", "tiny"] if tiny else
                       ["--preset", "paper", "--model", "deeplabv2"]), *size, *n, "--batch-size", "1",
                       "--iters", "24" if tiny else "40", "--save-every", "1", "--quiet", "--out", str(folder)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # stop it after its labelling round, in the half of the run that is left (a checkpoint every iteration)
        while not (folder / "selection.pt").exists() and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=timeout)
        stopped = proc.returncode
        run(train + ["--resume", str(folder), "--quiet"], "resuming the short run")
        metrics = json.loads((folder / "metrics.json").read_text())
        report["short_run"] = {"stopped_with": stopped, "resumed_to": metrics["iters"], "miou": metrics["miou"],
                               "stage_seconds": metrics["stage_seconds"], "wall_seconds": time.perf_counter() - t0,
                               "command": " ".join(cmd[1:])}
        if stopped not in (0, 143):
            raise RuntimeError(f"the short run did not stop on SIGTERM with a checkpoint (exit {stopped}):\n{err[-2000:]}")
        # (c) the paper's run, stage by stage, at the short run's seconds per iteration, per B step and per image
        s, a = metrics["stage_seconds"], metrics["args"]
        b_iters = as_iterations(a["selector_iters"], a["iters"])
        per = {"A iteration": s["adaptation"] / a["iters"], "B iteration": s["selector"] / max(b_iters, 1),
               "selection per image": s["selection"] / a["n_target"], "evaluation per image": s["evaluation"] / a["n_val"]}
    estimate = {"A (warm-up and adaptation, 250k iterations)": per["A iteration"] * PAPER_RUN["iters"],
                "B (125k iterations)": per["B iteration"] * PAPER_RUN["selector_iters"],
                "selection (2,975 target images)": per["selection per image"] * PAPER_RUN["target_images"],
                "evaluation (500 val images)": per["evaluation per image"] * PAPER_RUN["val_images"]}
    report["estimate_seconds"] = {**estimate, "total": sum(estimate.values())}
    report["per_unit_seconds"] = per
    report["from_the_benchmark_seconds"] = {k: PAPER_RUN["iters"] / v["iters_per_second"]
                                            for k, v in report["benchmark"].items()}
    Path(out).write_text(json.dumps(report, indent=2))
    print(check_report(report))
    return report


def check_report(r):
    """The report in a few lines."""
    lines = [f"bench.py --check on {r['benchmark']['fp32']['device']} ({'tiny' if r['tiny'] else 'the paper preset'})"]
    for name, b in r["benchmark"].items():
        frac = f", {100 * b['fraction_of_peak']:.0f}% of the dense bf16 peak" if b.get("fraction_of_peak") else ""
        top = ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in b.get("profile", [])[:3])
        lines.append(f"  {name}: {b['iters_per_second']:.2f} it/s, {b['peak_memory_gib']:.2f} GiB peak, "
                     f"{b['achieved_tflops']:.2f} TFLOP/s{frac}; top operators: {top}")
    sr = r["short_run"]
    lines.append(f"  short SPL run: stopped by SIGTERM (exit {sr['stopped_with']}), resumed to iteration "
                 f"{sr['resumed_to']}, mIoU {100 * sr['miou']:.1f}, {sr['wall_seconds']:.0f} s")
    lines.append("  the paper's run (250k iterations), at the short run's rates:")
    lines += [f"    {k}: {v / 3600:.1f} h" for k, v in r["estimate_seconds"].items()]
    lines.append("  at the benchmark's joint step (A, B, D every iteration): " + ", ".join(
        f"{k} {v / 3600:.1f} h" for k, v in r["from_the_benchmark_seconds"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="Check a machine before the paper's run: the benchmark (fp32, bf16), a "
                                            "short real run with a stop and resume, and the paper run's wall time.")
    p.add_argument("--check", action="store_true", required=True, help="run the check")
    p.add_argument("--tiny", action="store_true", help="shrink everything: a minute or two on a 2-core CPU")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto picks cuda when present")
    p.add_argument("--out", default="bench_check.json", help="where to write the report as JSON")
    a = p.parse_args()
    check(a.device, a.tiny, a.out)
