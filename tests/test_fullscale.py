"""Full scale (issue 5), the part a CPU can check: the paper's command (DeepLab-V2, GTA5 -> Cityscapes folder
layouts, --preset paper) on tiny fake datasets, offline backbone weights (--weights PATH), mixed precision (--amp,
bf16 on CPU), DataLoader workers, --benchmark, and distributed training under torchrun (2 processes, gloo).
GPU speed (channels_last, fp16 with a GradScaler, NCCL) needs a GPU and is not checked here."""
import copy
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import data
from fakes import write_fake_cityscapes, write_fake_gta5  # noqa: E402
import labor
import models
from tools import distributed  # noqa: E402
import train
from tools import checkpoint as files  # noqa: E402
from tools import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)  # the tests share a small CPU

# The synthetic benchmark, tiny (as tests/test_train.py)
# --schedule joint: these runs label at the iterations they choose (--select-at)
TINY = ["--schedule", "joint", "--iters", "3", "--n-source", "8", "--n-target", "6", "--n-val", "4", "--size", "32",
        "64", "--batch-size", "2", "--width", "8", "--log-every", "3", "--threads", "1", "--save-every", "0",
        "--device", "cpu", "--quiet"]
# Fake Cityscapes is written at 64x128 (H x W) and read at --target-size 64 32 (W H), i.e. 32x64: the full-resolution
# val labels differ from the training resolution, so the test sees whether predictions are upsampled to them.
# (32 pixels is the least side FCDiscriminator's five stride-2 convolutions accept.)
SOURCE_HW, TARGET_HW, FULL_HW = (32, 64), (32, 64), (64, 128)
SMALL = ["--schedule", "joint", "--source-size", "64", "32", "--target-size", "64", "32", "--iters", "2",
         "--batch-size", "1", "--select-at", "1", "--threads", "1", "--save-every", "0", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    root = tmp_path_factory.mktemp("fakes")
    gta5 = write_fake_gta5(root / "gta5", n=4, size=SOURCE_HW)
    cityscapes = write_fake_cityscapes(root / "cityscapes", n=4, size=FULL_HW)
    return SimpleNamespace(gta5=str(gta5), cityscapes=str(cityscapes),
                           flags=["--data", "gta5-cityscapes", "--gta5-root", str(gta5), "--cityscapes-root",
                                  str(cityscapes)])


def paper_command(fakes):
    """The issue's command: python train.py --mode spl --data gta5-cityscapes ... --model deeplabv2 --preset paper"""
    return ["--mode", "spl", *fakes.flags, "--model", "deeplabv2", "--preset", "paper"]


# ================================================================================================================
# The paper's command on fake GTA5 / Cityscapes
# ================================================================================================================

@pytest.mark.slow
def test_paper_command_trains_and_evaluates_at_full_resolution(fakes, tmp_path, monkeypatch):
    """The full-scale command runs end to end on the fake datasets (DeepLab-V2, CPU, 2 iterations); its optimisers
    are the paper's; evaluation upsamples predictions to the full-resolution Cityscapes val labels."""
    seen = {"upsample_sizes": []}
    build_optimisers, evaluate = train.build_optimisers, train.evaluate
    iou_from_confusion, upsample = labor.iou_from_confusion, labor.upsample

    def spy_optimisers(args, net):
        opt = build_optimisers(args, net)
        seen.update(args=args, net=net, opt=opt,
                    initial={k: [(g["lr"], g.get("lr_mult")) for g in o.param_groups] for k, o in opt.items()})
        return opt

    def spy_evaluate(args, A, dataset, num_classes, *rt):
        seen["eval_dataset"], seen["in_eval"] = dataset, True
        try:
            return evaluate(args, A, dataset, num_classes, *rt)
        finally:
            seen["in_eval"] = False

    def spy_upsample(x, size, *a, **k):
        if seen.get("in_eval"):
            seen["upsample_sizes"].append((tuple(x.shape[-2:]), tuple(size)))
        return upsample(x, size, *a, **k)

    def spy_iou(conf):
        seen["conf"] = conf.clone()
        return iou_from_confusion(conf)

    monkeypatch.setattr(train, "build_optimisers", spy_optimisers)
    monkeypatch.setattr(train, "evaluate", spy_evaluate)
    monkeypatch.setattr(labor, "iou_from_confusion", spy_iou)
    monkeypatch.setattr(labor, "upsample", spy_upsample)
    out = tmp_path / "run"
    train.main(paper_command(fakes) + SMALL + ["--out", str(out)])

    # --- outputs
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "deeplabv2" and m["data"] == "gta5-cityscapes" and m["iters"] == 2
    assert math.isfinite(m["miou"]) and 0.0 <= m["miou"] <= 1.0
    assert len(m["per_class_iou"]) == 19 and m["ranks_agree"] is True
    assert m["labelled_pixels"] > 0                                    # SPL bought labels at iteration 1
    assert torch.load(out / "selection.pt", weights_only=True)["size"] == list(TARGET_HW)

    # --- the paper's models: DeepLab-V2 (ResNet-101) A and B, AdaptSegNet's two discriminators (ndf 64)
    args, net, opt = seen["args"], seen["net"], seen["opt"]
    assert set(net) == {"A", "B", "D", "D_aux"}
    for k in ("A", "B"):
        assert isinstance(train.unwrap(net[k]).backbone, models.ResNet101Backbone)
    assert train.unwrap(net["A"]).head_aux is not None                # multi-level: aux output on layer3
    for k in ("D", "D_aux"):
        assert isinstance(train.unwrap(net[k]), models.FCDiscriminator)
        assert train.unwrap(net[k]).net[0].out_channels == 64
    # AdaptSegNet's multi-level adversarial settings
    assert (args.gan, args.lambda_adv, args.lambda_adv_aux, args.lambda_seg_aux) == ("vanilla", 0.001, 0.0002, 0.1)

    # --- the paper's optimisers: SGD 2.5e-4, momentum 0.9, wd 5e-4, heads at 10x; D: Adam 1e-4, betas (0.9, 0.99)
    for k in ("A", "B"):
        o, module = opt[k], train.unwrap(net[k])
        assert isinstance(o, torch.optim.SGD)
        assert seen["initial"][k] == [(2.5e-4, 1.0), (2.5e-3, 10.0)]
        for g in o.param_groups:
            assert g["momentum"] == 0.9 and g["weight_decay"] == 5e-4
        heads = {id(p) for name, p in module.named_parameters() if name.startswith("head")}
        trainable = {id(p) for p in module.parameters() if p.requires_grad}
        assert {id(p) for p in o.param_groups[1]["params"]} == heads
        assert {id(p) for p in o.param_groups[0]["params"]} == trainable - heads   # frozen BN left out
    for k in ("D", "D_aux"):
        o = opt[k]
        assert isinstance(o, torch.optim.Adam)
        assert seen["initial"][k] == [(1e-4, None)]
        assert o.param_groups[0]["betas"] == (0.9, 0.99)
    # poly 0.9: the last iteration (it = 1 of 2) ran at base * (1 - 1/2) ** 0.9 (times the group's multiplier)
    scale = 0.5 ** 0.9
    assert [g["lr"] for g in opt["A"].param_groups] == pytest.approx([2.5e-4 * scale, 2.5e-3 * scale])
    assert opt["D"].param_groups[0]["lr"] == pytest.approx(1e-4 * scale)

    # --- evaluation: images at --target-size, labels at full resolution, predictions upsampled to the labels
    evals = seen["eval_dataset"]
    x, y = evals[0]
    assert tuple(x.shape[-2:]) == TARGET_HW and tuple(y.shape) == FULL_HW
    assert seen["upsample_sizes"] and all(size == FULL_HW for _, size in seen["upsample_sizes"])
    assert all(src == (TARGET_HW[0] // 8, TARGET_HW[1] // 8) for src, _ in seen["upsample_sizes"])
    full = data.Cityscapes(fakes.cityscapes, "val", label_size=None)
    valid = sum(int((full[i][1] != labor.IGNORE_INDEX).sum()) for i in range(len(full)))
    assert int(seen["conf"].sum()) == valid                            # every full-resolution labelled pixel


def test_paper_preset_defaults(fakes):
    """--preset paper alone: DeepLab-V2, 250k iterations of batch 1, GTA5 at 1280x720, Cityscapes at 1024x512 and
    val labels kept at full resolution."""
    args = train.get_args(paper_command(fakes))
    assert (args.model, args.iters, args.batch_size, args.lr, args.lr_d, args.ndf) == \
        ("deeplabv2", 250000, 1, 2.5e-4, 1e-4, 64)
    assert (args.momentum, args.weight_decay, args.power) == (0.9, 5e-4, 0.9)
    assert data.real_sizes(args.preset, args.source_size, args.target_size) == ((1280, 720), (1024, 512))
    source, target, evals, classes = train.build_data(args)
    assert len(classes) == 19
    assert source[0][0].shape == (3, 720, 1280) and source[0][1].shape == (720, 1280)
    assert target[0][0].shape == (3, 512, 1024) and target[0][1].shape == (512, 1024)
    assert evals[0][0].shape == (3, 512, 1024) and evals[0][1].shape == FULL_HW


# ================================================================================================================
# --weights PATH: offline ImageNet weights (never the download in tests)
# ================================================================================================================

@pytest.mark.slow
def test_weights_file_is_loaded_into_the_backbone(tmp_path):
    import torchvision
    torch.manual_seed(123)
    state = torchvision.models.resnet101(weights=None).state_dict()
    path = tmp_path / "resnet101.pth"
    torch.save(state, path)
    torch.manual_seed(0)  # another init: equality below can only come from the file
    backbone = models.DeepLabV2(19, weights=str(path)).backbone
    ours = dict(backbone.named_parameters()) | dict(backbone.named_buffers())
    rename = {"conv1.": "stem.0.", "bn1.": "stem.1."}
    checked = 0
    for k, v in state.items():
        if k.startswith("fc.") or k.endswith("num_batches_tracked"):
            continue
        name = next((new + k[len(old):] for old, new in rename.items() if k.startswith(old)), k)
        assert torch.equal(ours[name], v), k
        checked += 1
    assert checked > 500 and torch.equal(backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


@pytest.mark.slow
def test_weights_file_of_another_model_is_refused(tmp_path):
    """A file whose keys are not a resnet101's would otherwise leave the random init in place, silently."""
    path = tmp_path / "other.pth"
    torch.save({"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ValueError, match="not a torchvision resnet101"):
        models.DeepLabV2(19, weights=str(path))


def test_missing_weights_file_is_a_usage_error(fakes, tmp_path, capsys):
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(train.UsageError, match="--weights"):
        train.get_args(paper_command(fakes) + ["--weights", missing])
    with pytest.raises(SystemExit) as e:
        train.main(paper_command(fakes) + SMALL + ["--weights", missing, "--out", str(tmp_path / "r")])
    assert e.value.code == 2 and "--weights" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ================================================================================================================
# Speed features that run on a CPU: --amp (bf16 autocast), DataLoader workers
# ================================================================================================================

@pytest.mark.slow
def test_amp_trains_with_bf16_autocast_on_cpu(tmp_path, monkeypatch):
    dtypes = []
    seg_loss = labor.seg_loss
    monkeypatch.setattr(labor, "seg_loss", lambda logits, y, *a, **k: (dtypes.append(logits.dtype),
                                                                        seg_loss(logits, y, *a, **k))[1])
    args = train.get_args(["--mode", "spl", "--amp", "--select-at", "1", *TINY, "--out", str(tmp_path / "amp")])
    rt = runtime.setup(args)
    m = train.run(args, rt)
    assert rt.amp_dtype == torch.bfloat16
    assert torch.bfloat16 in dtypes                                    # the forward passes ran under autocast
    losses = [v for entry in m["history"] for k, v in entry.items() if k != "iter"]
    assert losses and all(math.isfinite(v) for v in losses)
    assert {"loss_seg", "loss_tgt", "loss_adv", "loss_D", "loss_pseudo", "loss_dis"} <= set(m["history"][-1])
    assert math.isfinite(m["miou"])
    state = torch.load(tmp_path / "amp" / "model_A.pt", weights_only=True)["A"]
    assert all(v.dtype != torch.bfloat16 for v in state.values())  # weights stay float32 (autocast, not .half())


def test_workers_give_the_same_batches(fakes):
    """The sampler is seeded, so --num-workers 2 yields exactly the batches of --num-workers 0."""
    args = train.get_args(paper_command(fakes) + SMALL + ["--batch-size", "2"])
    args.rank, args.world = 0, 1
    source = data.GTA5(fakes.gta5, size=(64, 32))
    batches = {}
    for workers in (0, 2):
        args.num_workers = workers
        s = runtime.stream(source, args, runtime.Runtime(), seed=5, start=3)
        batches[workers] = [next(s) for _ in range(4)]   # 8 samples of 4 images: crosses an epoch boundary
        s.close()
    for a, b in zip(batches[0], batches[2]):
        assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.slow
def test_workers_train_the_same_model(fakes, tmp_path):
    """A short run on the fake real datasets with --num-workers 2 equals one with 0 workers, weight for weight."""
    flags = [*fakes.flags, "--mode", "spl", "--model", "tiny", "--width", "8", *SMALL, "--iters", "3"]
    for workers in (0, 2):
        args = train.get_args(flags + ["--num-workers", str(workers), "--out", str(tmp_path / f"w{workers}")])
        train.run(args)
    a = torch.load(tmp_path / "w0" / "model_A.pt", weights_only=True)["A"]
    b = torch.load(tmp_path / "w2" / "model_A.pt", weights_only=True)["A"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ================================================================================================================
# --benchmark N
# ================================================================================================================

def conv_forward_flops(modules):
    """Forward-hook count of 2 * multiply-adds of every Conv2d call: what FlopCounterMode counts for a forward."""
    total = [0]

    def hook(conv, inputs, output):
        cin_per_group = conv.in_channels // conv.groups
        total[0] += 2 * output.numel() * cin_per_group * conv.kernel_size[0] * conv.kernel_size[1]

    handles = [c.register_forward_hook(hook) for m in modules for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    return total, handles


@pytest.mark.slow
def test_benchmark_prints_one_json_line_with_consistent_flops(capsys):
    flags = ["--benchmark", "2", "--size", "32", "64", "--width", "8", "--threads", "1", "--device", "cpu", "--quiet"]
    results = {}
    for b in (2, 4):
        train.main(flags + ["--batch-size", str(b)])
        lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert len(lines) == 1
        results[b] = r = json.loads(lines[0])
        for k in ("iters_per_second", "images_per_second", "peak_memory_gib", "tflop_per_iteration",
                  "achieved_tflops"):
            assert isinstance(r[k], float) and r[k] > 0, k
        assert r["images_per_second"] == pytest.approx(r["iters_per_second"] * 2 * b)
        assert r["achieved_tflops"] == pytest.approx(r["tflop_per_iteration"] * r["iters_per_second"])
        assert r["batch_size"] == b and r["source_hw"] == [32, 64] and r["iterations"] == 2
    assert results[4]["tflop_per_iteration"] == pytest.approx(2 * results[2]["tflop_per_iteration"], rel=0.05)

    # an independent count of one LabOR iteration at batch 2: FlopCounterMode, and forward hooks on every conv
    # (the joint schedule's step, which trains A, B and D at once, as the benchmark times it)
    args = train.get_args(["--schedule", "joint", "--size", "32", "64", "--width", "8", "--batch-size", "2",
                           "--threads", "1", "--device", "cpu", "--quiet"])
    runtime.setup(args)
    num_classes = len(data.SYNTHETIC_CLASSES)
    net = train.build_models(args, num_classes)
    opt = train.build_optimisers(args, net)
    theta = torch.full((num_classes,), labor.IAST_THETA0)
    x = torch.rand(2, 3, 32, 64)
    y = torch.randint(num_classes, (2, 32, 64))
    forward, handles = conv_forward_flops(net.values())
    with FlopCounterMode(display=False) as counter:
        train.train_step(args, net, opt, theta, (x, y), (x, torch.arange(2)), y)
    for h in handles:
        h.remove()
    total = counter.get_total_flops()
    assert results[2]["tflop_per_iteration"] == pytest.approx(total / 1e12, rel=1e-6)
    # backward costs at most twice the forward (input and weight gradients), at least once (weight gradients)
    assert 2 * forward[0] < total <= 3 * forward[0]


def test_benchmark_times_the_long_tail_with_its_19_classes(capsys):
    """--benchmark --scenes long-tail builds the models with Cityscapes' 19 classes, the balanced benchmark's 9
    (catches: the benchmark timing a 9-class head where the run trains 19)."""
    for scenes, classes in (("balanced", 9), ("long-tail", 19)):
        train.main(["--benchmark", "1", "--scenes", scenes, "--size", "32", "64", "--width", "8", "--threads", "1",
                    "--device", "cpu", "--quiet"])
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["classes"] == classes


@pytest.mark.slow
def test_benchmark_profile_names_where_the_time_goes(capsys):
    """--profile adds the operators with the most time of their own: shares in (0, 1], largest first, summing to
    at most 1; on these convolutional models a convolution is among the first three."""
    train.main(["--benchmark", "1", "--profile", "--size", "32", "64", "--width", "8", "--threads", "1",
                "--device", "cpu", "--quiet"])
    r = json.loads(capsys.readouterr().out)
    shares = [p["share"] for p in r["profile"]]
    assert 1 <= len(shares) <= 8 and all(0 < s <= 1 for s in shares) and sum(shares) <= 1 + 1e-9
    assert shares == sorted(shares, reverse=True)
    assert any("conv" in p["op"] for p in r["profile"][:3]), r["profile"]


# ================================================================================================================
# Distributed: torchrun, 2 processes, gloo
# ================================================================================================================

def test_infinite_sampler_splits_one_stream_across_ranks():
    """Rank r of W takes every W-th index of the single-process stream, from any start: the ranks together see the
    same samples as one process, none twice, across epoch boundaries."""
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]
    single = take(runtime.InfiniteSampler(5, seed=3), 40)
    assert sorted(single[:5]) == sorted(single[5:10]) == list(range(5)) and single[:5] != single[5:10]
    for start in (0, 7):
        ranks = [take(runtime.InfiniteSampler(5, seed=3, start=start, rank=r, world=2), 10) for r in (0, 1)]
        merged = [i for pair in zip(*ranks) for i in pair]
        assert merged == single[2 * start:2 * start + 20]


def test_state_digest_and_ranks_agree_can_fail(monkeypatch):
    """The check recorded as metrics.json's "ranks_agree" tells different weights apart (one element, one ulp)."""
    torch.manual_seed(0)
    net = {"A": models.TinyDeepLab(9, width=4), "D": models.FCDiscriminator(9, 4)}
    twin = copy.deepcopy(net)
    assert files.state_digest(net) == files.state_digest(twin)
    with torch.no_grad():
        w = twin["A"].head.branches[2].weight
        w.view(-1)[7] = torch.nextafter(w.view(-1)[7], torch.tensor(1.0))
    assert files.state_digest(net) != files.state_digest(twin)
    twin["A"].load_state_dict(net["A"].state_dict())
    assert files.state_digest(net) == files.state_digest(twin)
    twin["A"].backbone.stem[0][1].running_mean[0] += 1          # buffers count too
    assert files.state_digest(net) != files.state_digest(twin)

    assert distributed.ranks_agree(SimpleNamespace(world=1, rank=0), net)
    for other, expected in ((net, True), (twin, False)):   # what a second rank would send
        monkeypatch.setattr(torch.distributed, "all_gather_object",
                            lambda out, obj, o=other: out.__setitem__(slice(None), [obj, files.state_digest(o)]))
        assert distributed.ranks_agree(SimpleNamespace(world=2, rank=0), net) is expected


@pytest.mark.slow
def test_torchrun_two_processes_match_single_process_selection(tmp_path):
    """DDP on 2 CPU processes: trains, only rank 0 writes, every rank ends with the same weights (ranks_agree),
    the selection at iteration 0 (models still at their seeded init) equals a single process's label for label,
    and the all-reduced evaluation equals a single-process evaluation of the saved model."""
    flags = ["--mode", "spl", *TINY, "--select-at", "0"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "train.py", *flags,
           "--out", str(tmp_path / "ddp")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    train.run(train.get_args(flags + ["--out", str(tmp_path / "single")]))

    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert ddp["platform"]["world"] == 2 and single["platform"]["world"] == 1
    assert ddp["ranks_agree"] is True
    files = {run: sorted(p.name for p in (tmp_path / run).iterdir()) for run in ("ddp", "single")}
    assert files["ddp"] == files["single"]                             # rank 1 wrote nothing extra
    a = torch.load(tmp_path / "ddp" / "selection.pt", weights_only=True)
    b = torch.load(tmp_path / "single" / "selection.pt", weights_only=True)
    for k in ("image_index", "pixel_index", "label"):
        assert torch.equal(a[k], b[k]), k
    assert len(a["label"]) > 0 and ddp["labelled_pixels"] == single["labelled_pixels"] == len(a["label"])
    assert len(set(zip(a["image_index"].tolist(), a["pixel_index"].tolist()))) == len(a["label"])  # once each

    # evaluation: the confusion matrix all-reduced over both ranks' halves of val is the whole split's
    assert math.isfinite(ddp["miou"]) and 0.0 <= ddp["miou"] <= 1.0
    args = train.get_args(flags + ["--out", str(tmp_path / "unused")])
    runtime.setup(args)
    source, target, evals, classes = train.build_data(args)
    A = train.build_models(args, len(classes))["A"]
    A.load_state_dict(torch.load(tmp_path / "ddp" / "model_A.pt", weights_only=True)["A"])
    miou, _ = train.evaluate(args, A, evals, len(classes))
    assert miou == pytest.approx(ddp["miou"], abs=1e-12)


@pytest.mark.slow
def test_bench_check_runs_every_part_and_estimates_the_paper_run(tmp_path):
    """python -m tools.bench --check --tiny: the benchmark in fp32 and bf16 with its profile, a short SPL run stopped by
    SIGTERM after its labelling round (exit 143, a checkpoint) and resumed to its end, and the paper run's hours,
    stage by stage, from the short run's rates; a report on stdout and as JSON."""
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, "-m", "tools.bench", "--check", "--tiny", "--device", "cpu", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert [b["amp"] for b in r["benchmark"].values()] == ["None", "torch.bfloat16"]
    assert all(b["iters_per_second"] > 0 and b["profile"] for b in r["benchmark"].values())
    assert r["short_run"]["stopped_with"] == 143 and r["short_run"]["miou"] >= 0
    est = r["estimate_seconds"]
    assert est["total"] == pytest.approx(sum(v for k, v in est.items() if k != "total")) and est["total"] > 0
    assert est["A iteration x 250,000"] == pytest.approx(r["per_unit_seconds"]["A iteration"] * 250000)
    assert est["selection per image x 2,975"] == pytest.approx(r["per_unit_seconds"]["selection per image"] * 2975)
    assert "the paper's run (250k iterations)" in done.stdout and "stopped by SIGTERM (exit 143)" in done.stdout
