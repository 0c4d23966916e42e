"""train.py's command line: every flag with its help text and the paper's value, each value checked before any
work starts (a mistake is one UsageError naming the flag), and the defaults that depend on the preset.

    get_args(argv)     the settings of one run (made here once; the run reads them and never changes them)
    build_parser()     the flags in groups: the method, our additions, the annotator, the data, the run, the benchmark
"""
import argparse
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import torch

import cost
import labor
import selection
from tools import UsageError
from tools.checkpoint import WARMUP, resume_args
from tools.label_studio import DEFAULT_URL

EXPERIMENTS = ("table", "sweep", "noise")   # several runs: python -m tools.experiments
DESCRIPTION = """LabOR end to end (Shin et al., ICCV 2021): warm up A (Eq. 1, 3), train the pixel selector B (Eq. 5, 6),
let a selector choose target pixels and the annotator label them, adapt A with them (Eq. 2), evaluate.

    python train.py --mode spl            # segment-based labelling on the synthetic benchmark
    python train.py --mode ppl            # point-based labelling
    python -m tools.experiments table     # many runs: the miniature Table 1
"""

# ------------------------------------------------------------------------------------------------ arguments

class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes raise UsageError, so that main prints them as its one 'error: ...' line (argparse
    would print the usage block first) and a caller in Python gets an exception rather than SystemExit."""

    def error(self, message):
        raise UsageError(message)


def _checked(convert, ok, valid):
    """An argparse type: convert the text and check the value; argparse puts the flag's name before the message."""
    def check(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {valid}")
        return value
    return check


MIN_SIDE = 32  # the discriminator's five 4x4 stride-2 convolutions leave nothing of a smaller image
positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
seed = _checked(int, lambda v: 0 <= v < 2 ** 32, "a seed, an integer in [0, 2**32)")
image_side = _checked(int, lambda v: v >= MIN_SIDE, f"an image side of at least {MIN_SIDE} pixels (the "
                                                    f"discriminator halves it five times)")
# (NaN fails every comparison; infinity the upper bound)
positive_float = _checked(float, lambda v: 0 < v < math.inf, "a positive number")
non_negative_float = _checked(float, lambda v: 0 <= v < math.inf, "a number >= 0")
unit_float = _checked(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
fraction = _checked(float, lambda v: 0 < v <= 1, "a fraction in (0, 1], e.g. 0.022")
momentum = _checked(float, lambda v: 0 <= v < 1, "a momentum in [0, 1)")
existing_dir = _checked(str, lambda v: Path(v).is_dir(), "an existing folder")
existing_file = _checked(str, lambda v: Path(v).is_file(), "an existing file")
folder = _checked(str, lambda v: not Path(v).is_file(), "a folder (it may not exist yet), not a file")


def add_data_flags(p, synthetic_only=False):
    """The flags of the data: the synthetic benchmark's knobs, then the real datasets' folders and your own (three
    groups). synthetic_only: the benchmark's knobs alone (python -m tools.export_synthetic)."""
    g = p.add_argument_group("the synthetic benchmark (synthetic.py; the default data)")
    a = g.add_argument
    if not synthetic_only:
        a("--data", default="synthetic", choices=["synthetic", "gta5-cityscapes", "folder"],
          help="benchmark (default synthetic); folder: your own images (docs/own_data.md)")
        a("--eval-split", default="val", choices=["val", "tune"],
          help="'val' reports on target val; 'tune' on a tuning split generated with another seed (for choosing "
               "settings without looking at val; synthetic only)")
    a("--size", type=image_side, nargs=2, default=None, metavar=("H", "W"),
      help="synthetic image size (default 96 192; --data folder: the size both sides are resized to)")
    a("--shift", type=unit_float, default=0.6,
      help="synthetic domain-shift strength: 0 = target looks like source, 1 = synthetic.py's full target style "
           "(default 0.6, chosen on the tuning split: source-only then scores well under 70%% of supervised)")
    a("--thing-shift", type=unit_float, default=0.0,
      help="synthetic: the shift of the things' colours alone (car, person, pole, sign). Default 0, chosen on the "
           "tuning split: an adapted model then recognises things partly, as on GTA5 -> Cityscapes; "
           "--thing-shift 0.6 (= --shift) is the first benchmark, where it misses them whole (docs/experiments.md)")
    a("--n-source", type=positive_int, default=None, help="synthetic source-train images (default 1000)")
    a("--n-target", type=positive_int, default=None, help="synthetic target-train images (default 500)")
    a("--n-val", type=positive_int, default=None, help="synthetic target-val images (default 200)")
    a("--data-seed", type=seed, default=0, help="seed of the synthetic benchmark itself (default 0)")
    a("--scenes", default=None, choices=["balanced", "long-tail"],
      help="synthetic scenes: 'balanced' (the benchmark: 9 classes, each in nearly every image) or 'long-tail' "
           "(Cityscapes' 19 classes with its pixel shares and rare things; python -m tools.benchmark_stats) "
           "(default balanced)")
    if synthetic_only:
        return
    a("--width", type=positive_int, default=24, help="--model tiny: the backbone's width (default 24)")
    g = p.add_argument_group("real data: GTA5 to Cityscapes (README, 'Full scale')")
    a = g.add_argument
    a("--gta5-root", type=existing_dir, default=None, help="GTA5 folder with images/ and labels/")
    a("--cityscapes-root", type=existing_dir, default=None, help="Cityscapes folder with leftImg8bit/ and gtFine/")
    a("--gta5-list", type=existing_file, default=None, help="optional AdaptSegNet-style list of GTA5 image names")
    a("--cityscapes-list", type=existing_file, default=None, help="optional list of Cityscapes train image names")
    a("--source-size", type=image_side, nargs=2, default=None, metavar=("W", "H"),
      help="real data: source resize (paper preset 1280 720; otherwise 640 360; --data folder: --size)")
    a("--target-size", type=image_side, nargs=2, default=None, metavar=("W", "H"),
      help="real data: target resize (paper preset 1024 512; otherwise 512 256; --data folder: --size)")
    g = p.add_argument_group("your own data: --data folder (docs/own_data.md); GTA5 may be the source and Cityscapes "
                             "the target when the class file names Cityscapes' 19 classes")
    a = g.add_argument
    suffix = _checked(str, lambda v: "." in v and "/" not in v and "\\" not in v,
                      "a file-name ending such as .png or _leftImg8bit.png")
    a("--source-root", default=None, metavar="DIR",
      help="source folder: DIR/img_dir/train and DIR/ann_dir/train (or --gta5-root)")
    a("--target-root", default=None, metavar="DIR",
      help="target folder: DIR/img_dir/{train,val}, DIR/ann_dir/val and, for the oracle annotator, DIR/ann_dir/train "
           "(or --cityscapes-root)")
    a("--classes", type=existing_file, default=None, metavar="FILE",
      help='class file (JSON): {"classes": [names in train-ID order], "palette": [[r, g, b], ...], '
           '"map": {"value on disk": train ID}}; palette and map optional')
    a("--img-suffix", type=suffix, nargs="+", default=[".png", ".jpg"],
      help="how image file names end (default .png .jpg)")
    a("--seg-suffix", type=suffix, default=".png", help="how label file names end (default .png)")


def add_run_flags(p):
    """The flags of the run itself, not of the method: where it runs, where it writes, checkpoints."""
    a = p.add_argument_group("the run (device, output, resume; docs/operations.md)").add_argument
    a("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto picks cuda when available")
    a("--out", default=None, help="run folder (default runs/<mode>-<time>)")
    a("--init-from", default=None, metavar="RUN_DIR",
      help="start where the warm-up of the staged run in RUN_DIR ended (its warmup.pt: A, D, optimisers, RNG), "
           "with its trained B when B's settings agree: the runs of a seed share one warm-up (python -m tools.experiments)")
    a("--budget-from", default=None, metavar="RUN_DIR",
      help="--budget: the labelled fraction the finished run in RUN_DIR bought (random at SPL's budget)")
    a("--log-every", type=positive_int, default=50, help="one log line every N iterations (default 50)")
    a("--threads", type=positive_int, default=None, help="CPU threads for torch (default: all cores)")
    a("--num-workers", type=non_negative_int, default=0,
      help="DataLoader workers (default 0; 4 suits the real datasets)")
    a("--quiet", action="store_true", help="no progress bars or log lines (metrics.json is still written)")
    a("--save-every", type=non_negative_int, default=100,
      help="write checkpoint.pt every N iterations, atomically, and at the end (default 100; 0: only at the end)")
    a("--resume", default=None, metavar="RUN_DIR",
      help="continue the run in RUN_DIR from its last complete checkpoint, with its own settings (other flags "
           "but --device/--threads/--num-workers/--quiet/--label-studio-url/--accept-partial are ignored); labels "
           "already bought are reused")
    a("--amp", action="store_true", help="mixed precision: bf16 where supported, else fp16 with a GradScaler")


def add_person_flags(p):
    """The flags of a person as the annotator: Label Studio answers the labelling rounds (docs/annotating.md)."""
    a = p.add_argument_group("a person as the annotator: Label Studio (docs/annotating.md)").add_argument
    a("--annotator", default="oracle", choices=["oracle", "label-studio"],
      help="who answers a labelling round: 'oracle', the dataset's target-train labels (default), or 'label-studio': "
           "the run puts the round in Label Studio, saves and stops; a person labels; --resume reads the answers. "
           "The token: the environment's LABEL_STUDIO_API_KEY")
    a("--label-studio-url", default=None, metavar="URL",
      type=_checked(str, lambda v: v.startswith(("http://", "https://")), "an address such as http://localhost:8080"),
      help=f"Label Studio's address (default {DEFAULT_URL}; a resumed run keeps its own unless given)")
    a("--accept-partial", action="store_true",
      help="--resume: go on with the tasks answered so far (the others' pixels stay unlabelled) rather than stop")


def check_person(args):
    """--annotator label-studio needs the SDK and the token, before any training; the oracle's flags stay its own."""
    if args.annotator == "oracle":
        if not args.resume and (args.label_studio_url or args.accept_partial):
            raise UsageError(f"{'--label-studio-url' if args.label_studio_url else '--accept-partial'} is for "
                             f"--annotator label-studio")
        return
    if importlib.util.find_spec("label_studio_sdk") is None:
        raise UsageError("--annotator label-studio needs the Label Studio SDK: pip install -r requirements-annotate.txt")
    if not os.environ.get("LABEL_STUDIO_API_KEY"):
        raise UsageError("--annotator label-studio needs Label Studio's token in LABEL_STUDIO_API_KEY (its page "
                         "'Account & Settings', or the LABEL_STUDIO_USER_TOKEN it was started with)")
    if args.annotator_noise > 0:
        raise UsageError("--annotator-noise simulates the oracle's slips; a person in Label Studio makes their own")


def check_args(args):
    """What no single flag's type can check: flags that need each other, files, the device."""
    real = args.data == "gta5-cityscapes"
    if args.init_from and not args.resume and not (Path(args.init_from) / WARMUP).is_file():
        raise UsageError(f"--init-from {args.init_from}: there is no {WARMUP} there; give the folder of a staged run of "
                         f"this seed that has bought its labels (python -m tools.experiments runs it first)")
    if args.budget_from and not args.resume:
        if args.budget is not None:
            raise UsageError("give --budget or --budget-from, not both")
        done = Path(args.budget_from) / "metrics.json"
        if not done.is_file():
            raise UsageError(f"--budget-from {args.budget_from}: there is no finished run there ({done}); run it "
                             f"first")
        args.budget = json.loads(done.read_text())["labelled_fraction"]
    if real and (not args.gta5_root or not args.cityscapes_root):
        raise UsageError("--data gta5-cityscapes needs --gta5-root and --cityscapes-root (see README, 'Full scale')")
    if args.data != "synthetic" and args.eval_split != "val":
        raise UsageError("--eval-split tune exists for the synthetic benchmark only")
    own = {"--source-root": args.source_root, "--target-root": args.target_root, "--classes": args.classes}
    if args.data != "folder" and any(own.values()):
        raise UsageError(f"{next(k for k, v in own.items() if v)} is for --data folder (docs/own_data.md)")
    if args.data == "folder":   # each side your folder or GTA5 / Cityscapes (data.folder_data); the sizes set here
        if bool(args.source_root) == bool(args.gta5_root) or bool(args.target_root) == bool(args.cityscapes_root):
            raise UsageError("--data folder needs one source, --source-root DIR or --gta5-root DIR, and one target, "
                             "--target-root DIR or --cityscapes-root DIR (docs/own_data.md)")
        if (args.source_root or args.target_root) and not args.classes:
            raise UsageError("--data folder needs --classes FILE, the class file of your folder (docs/own_data.md)")
        target = Path(args.target_root or ".")
        if args.target_root and target.is_dir() and not (target / "ann_dir" / "train").is_dir() and \
                args.annotator == "oracle":
            raise UsageError(f"target {target} has no ann_dir/train: the oracle annotator reveals target labels from "
                             f"there; for a person to label them, give --annotator label-studio (docs/annotating.md)")
        import data   # (a concept file: its sizes rule, so that metrics.json records the sizes used)
        args.source_size, args.target_size = (list(s) for s in data.folder_sizes(
            args.preset, args.size, args.source_size, args.target_size))
    if args.weights not in (None, "imagenet") and not Path(args.weights).is_file():
        raise UsageError(f"--weights {args.weights}: no such file; give 'imagenet' (torchvision download) or the "
                         f"path of a torchvision resnet101 state dict")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA GPU here; use --device cpu (or auto)")
    check_schedule(args)


def as_iterations(value, iters):
    """A count given as iterations (>= 1) or as a fraction of --iters (< 1)."""
    return int(round(value * iters)) if value < 1 else int(value)


def check_schedule(args):
    """--warmup must leave training on both sides of the labelling, --select-at name iterations in [0, --iters),
    --selector-iters at least one iteration (train.select_iterations turns them into iteration numbers)."""
    if args.schedule == "staged":
        if args.select_at is not None and not args.resume:  # (a run saved before --select-at had no default)
            raise UsageError(f"--select-at is for --schedule joint; the staged schedule labels once, at the end "
                             f"of --warmup ({args.warmup})")
        if not 0 < as_iterations(args.warmup, args.iters) < args.iters or (
                args.warmup > 1 and args.warmup != int(args.warmup)):
            raise UsageError(f"--warmup {args.warmup}: give a fraction of --iters in (0, 1) or whole iterations "
                             f"in [1, --iters={args.iters}) that leave training on both sides of the labelling")
    else:
        its = {as_iterations(s, args.iters) for s in args.select_at}
        if any(i < 0 or i >= args.iters for i in its) or any(s > 1 and s != int(s) for s in args.select_at):
            raise UsageError(f"--select-at {' '.join(map(str, args.select_at))}: give fractions of --iters in "
                             f"[0, 1) or whole iterations in [1, --iters={args.iters})")
    if as_iterations(args.selector_iters, args.iters) < 1:
        raise UsageError(f"--selector-iters {args.selector_iters} is less than one iteration of --iters "
                         f"{args.iters}")



def get_args(argv=None):
    mode, rest = build_parser().parse_known_args(argv)
    if mode.mode in EXPERIMENTS:  # their flags (--seeds, --budgets, --jobs) are experiments.py's
        words = [w for w in (argv if argv is not None else sys.argv[1:]) if w not in ("--mode", mode.mode)]
        raise UsageError(f"--mode {mode.mode} runs many runs: python -m tools.experiments {mode.mode} {' '.join(words)}")
    args = build_parser().parse_args(argv)
    if args.resume:
        args = resume_args(args)
    return apply_defaults(args)


def build_parser():
    """The flags in groups: the method with the paper's values, our additions, the data, the run, the benchmark
    (the last three: add_data_flags, add_run_flags, add_benchmark_flags). Every flag has its valid values (the
    types above): a bad value is refused before any work starts."""
    p = ArgumentParser(prog="train.py", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument_group("the method (LabOR), with the paper's values").add_argument
    a("--mode", default="spl", help="one of " + ", ".join(selection.modes()) + " (default: spl). ripu_regions and ripu_points: "
      "RIPU's selector (Xie et al. 2022) in this pipeline; ripu: RIPU as published (its rounds and losses); "
      "margin: A's smallest top-2 margin (Scheffer et al. 2001). Tables and sweeps: python -m tools.experiments")
    a("--preset", default="synthetic", choices=["synthetic", "paper"],
      help="'synthetic': our CPU defaults for the built-in benchmark; 'paper': DeepLab-V2 settings of the paper "
           "(SGD 2.5e-4, momentum 0.9, wd 5e-4, poly 0.9; D: Adam 1e-4, betas (0.9, 0.99); 1280x720 / 1024x512)")
    a("--model", default=None, choices=["tiny", "deeplabv2"], help="paper: deeplabv2 (synthetic default: tiny)")
    a("--weights", default=None, help="DeepLab-V2 backbone weights: 'imagenet' (torchvision download, the paper's) or "
                                      "a file path to a torchvision resnet101 state dict (default none)")
    a("--ndf", type=positive_int, default=None, help="discriminator width (paper 64; tiny default 16)")
    a("--iters", type=positive_int, default=None,
      help="training iterations of stage 1 (paper 250000; synthetic default 500: a 4-minute run on 2 cores)")
    a("--batch-size", type=positive_int, default=None, help="images per batch per domain (paper 1; synthetic 8)")
    a("--lr", type=positive_float, default=None,
      help="SGD learning rate of A and B (paper 2.5e-4; synthetic 0.01)")
    a("--lr-d", type=positive_float, default=None, help="Adam learning rate of D (paper 1e-4; synthetic 1e-3)")
    a("--momentum", type=momentum, default=0.9, help="SGD momentum (paper 0.9)")
    a("--weight-decay", type=non_negative_float, default=5e-4, help="SGD weight decay (paper 5e-4)")
    a("--power", type=non_negative_float, default=0.9, help="poly learning-rate power (paper 0.9)")
    a("--gan", default="vanilla", choices=["vanilla", "ls"], help="adversarial loss (AdaptSegNet: vanilla)")
    a("--lambda-seg-aux", type=non_negative_float, default=labor.LAMBDA_SEG_AUX,
      help="aux segmentation weight (0.1)")
    a("--lambda-adv", type=non_negative_float, default=labor.LAMBDA_ADV_MAIN,
      help="Eq. 3 weight, main output (0.001)")
    a("--lambda-adv-aux", type=non_negative_float, default=labor.LAMBDA_ADV_AUX,
      help="Eq. 3 weight, aux output (0.0002)")
    a("--lambda-target", type=non_negative_float, default=1.0, help="Eq. 2 weight (1.0)")
    a("--lambda-dis", type=non_negative_float, default=0.05,
      help="Eq. 6 weight in the selector's loss (not given in the paper). It sets the mask size: on the tuning "
           "split 0.05 / 0.2 / 0.5 gave masks of 1.5 / 7.4 / 15.9%% of the pixels; 0.05 is nearest the paper's "
           "2.2%% (default 0.05)")
    a("--iast-alpha", type=unit_float, default=labor.IAST_ALPHA, help="IAST alpha (0.2)")
    a("--iast-beta", type=unit_float, default=labor.IAST_BETA, help="IAST beta (0.9)")
    a("--iast-gamma", type=non_negative_float, default=labor.IAST_GAMMA, help="IAST gamma (8.0 for GTA5)")
    a("--budget", type=fraction, default=None,
      help="labelled fraction of pixels per image in (0, 1]: sets random, entropy, ripu_regions, ripu (default "
           "0.022, the paper's SPL budget); caps SPL, which by default labels its whole mask as in the paper "
           "(the cap is ours: --spl-cap)")
    a("--points", type=positive_int, default=40, help="PPL (and ripu_points) points per image (paper 40)")
    a("--ppl-space", default="prob", choices=["prob", "feat"],
      help="PPL prototype space: the heads' mean softmax ('prob') or B's features ('feat') (default prob)")
    a("--seed", type=seed, default=0, help="training seed (default 0)")

    a = p.add_argument_group("our additions, not in the paper (each chosen on the tuning split: "
                             "docs/experiments.md)").add_argument
    a("--schedule", default="staged", choices=["joint", "staged"],
      help="'staged' (our reading of the paper's Fig. 2): warm up A (Eq. 1, 3), then train B on that A's "
           "pseudo-labels with A fixed, select, and continue A with the labels (Eq. 1-3); 'joint': B trains beside "
           "A from the start and labels are bought at --select-at (default staged)")
    a("--warmup", type=positive_float, default=0.5,
      help="staged: A's warm-up before selection, as iterations (>= 1) or a fraction of --iters (< 1) (default 0.5)")
    a("--selector-iters", type=positive_float, default=0.5,
      help="staged: B's training iterations with A fixed, as iterations (>= 1) or a fraction of --iters (< 1) "
           "(default 0.5)")
    a("--selector-init", default="a", choices=["a", "scratch"],
      help="staged: B's backbone starts from A's warm-up weights ('a', the analogue of the paper's shared "
           "ImageNet start) or from a random start ('scratch') (default a)")
    a("--select-at", type=non_negative_float, nargs="+", default=None,
      help="--schedule joint: labelling rounds, as iterations (>= 1) or fractions of --iters (< 1); several rounds "
           "split the budget (default 0.5: one round half-way). The staged schedule labels once, after --warmup")
    a("--spl-cap", default="random", choices=["random", "discrepancy"],
      help="which mask pixels SPL keeps when --budget is smaller than its mask: 'random' ones, spread over the "
           "mask, or the most 'discrepant' (per-pixel Eq. 6), which lie packed together (default random)")
    a("--ppl-cell", type=non_negative_int, default=0,
      help="PPL: at most one point of a class per NxN block of the image (8 = A's output stride: one point per "
           "output cell); the paper's points may lie side by side. --points is then at most (default 0: the "
           "paper's rule, the nearest points wherever they lie)")
    a = p.add_argument_group("the annotator, not in the paper: what a label costs a person, and how people err "
                             "(cost.py)").add_argument
    a("--seconds-per-point", type=positive_float, default=cost.SECONDS_PER_POINT,
      help="seconds for one point with its class, or one label for a whole region (Bearman et al. 2016: 2.4)")
    a("--seconds-per-click", type=positive_float, default=cost.SECONDS_PER_POLYGON_CLICK,
      help="seconds per polygon vertex or boundary crossing (Cityscapes: over 1.5 h / 1,713 clicks = 3.2)")
    a("--contour-tolerance", type=positive_float, default=cost.CONTOUR_TOLERANCE,
      help="pixels a traced polygon may stray from an outline (default 0.75)")
    a("--annotator-noise", type=unit_float, default=0.0,
      help="probability that a label near a class boundary (--noise-band) is the class on the other side "
           "(default 0: the perfect annotator)")
    a("--noise-band", type=positive_int, default=1,
      help="--annotator-noise: how many pixels from a class boundary a label may go wrong (default 1)")
    add_person_flags(p)    # --annotator label-studio: a person answers in Label Studio
    add_data_flags(p)      # the synthetic benchmark; real data
    add_run_flags(p)       # --device, --out, --threads, --quiet, --save-every, --resume, --init-from, --amp, ...
    add_benchmark_flags(p)      # --benchmark N, --profile, --peak-tflops
    return p


def apply_defaults(args):
    """Fill what depends on the preset, and check every value (a UsageError names what is wrong)."""
    if args.mode not in selection.modes():
        raise UsageError(f"unknown --mode {args.mode!r}; choose one of: {', '.join(selection.modes())}")
    paper = args.preset == "paper"
    real = args.data == "gta5-cityscapes"
    defaults = dict(model="deeplabv2" if (paper or real) else "tiny",
                    iters=250000 if paper else 500, batch_size=1 if paper else 8,
                    lr=2.5e-4 if paper else 0.01, lr_d=1e-4 if paper else 1e-3)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.ndf is None:
        args.ndf = 64 if args.model == "deeplabv2" else 16
    if args.size is None:
        args.size = [96, 192]
    if args.select_at is None and args.schedule == "joint":
        args.select_at = [0.5]  # one round half-way (the staged schedule labels after --warmup instead)
    if args.init_from and not args.resume and not selection.shares_warmup(args.mode, args.schedule):
        raise UsageError(f"--init-from: only a staged run that adapts A alone before its labels (adaptseg or a "
                         f"selector, not --mode {args.mode} under --schedule {args.schedule}) starts from another's "
                         f"warm-up")
    if args.budget_from and getattr(selection.modes()[args.mode].selector, "budget", None) != "fraction":
        raise UsageError(f"--budget-from sets a fraction of the pixels, which --mode {args.mode} does not buy")
    check_person(args)  # --annotator label-studio: the SDK and the token
    check_args(args)  # the schedule's iterations, data folders, weights file, device, --resume
    return args


def add_benchmark_flags(p):
    g = p.add_argument_group("the speed benchmark (bench.py)")
    g.add_argument("--benchmark", type=non_negative_int, default=0, metavar="N",
                   help="time N LabOR iterations (after a warm-up) on random tensors at the configured resolution "
                        "and print one JSON line: iterations/s, images/s, peak memory, achieved TFLOP/s; trains "
                        "nothing")
    g.add_argument("--profile", action="store_true",
                   help="--benchmark: also profile 5 iterations (torch.profiler) and add the operators that take the "
                        "most time, with their share of it, to the JSON line ('profile')")
    g.add_argument("--peak-tflops", type=positive_float, default=None,
                   help="--benchmark: the device's peak TFLOP/s for the fraction-of-peak figure (default: looked up "
                        "by name)")
