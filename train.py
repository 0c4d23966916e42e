"""LabOR end to end: one script, read top to bottom beside the paper (Shin et al., ICCV 2021, Sec. 3).

    python train.py --mode spl            # LabOR with segment-based labelling on the synthetic benchmark
    python train.py --mode ppl            # ... with point-based labelling (several runs at once: experiments.py)

`run` at the bottom is the algorithm box (the paper's Fig. 2), each step a call:
  0. set-up       arguments, data, models A, B, D and their optimisers
  1. adaptation   `adapt`: A learns from source labels (Eq. 1) and fools D on target (Eq. 3); once target labels
                  exist A learns from them too (Eq. 2). Before the first labelling round: A's warm-up.
  1b. selector    `train_selector`: B learns the warmed-up A's pseudo-labels (Eq. 5) with A fixed while its two
                  heads are pushed apart (Eq. 6) (--schedule staged, the paper's Fig. 2; joint: B beside A in 1)
  2. selection    `select_round`: a selector (SPL, PPL, a baseline: selection.SELECTORS) looks at every target-train
                  image, the annotator reveals the labels it asks for; then 1 continues with them
  3. evaluation   `evaluate`: A on target val, mIoU from one confusion matrix, the final model only
  4. outputs      metrics.json, checkpoint, selection, figures in the run folder

The plumbing lives beside this file: job.py (what a run does around the method: its folder, checkpoints, resume,
--init-from, stop signals, outputs), runs.py (flags' valid values, files, the data stream), distributed.py
(torchrun), figures.py, bench.py (--benchmark); experiments.py runs many of these runs (tables, sweeps).
"""
import argparse
import contextlib
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm

import bench
import cost
import data
import figures
import labor
import models
import runs
import selection
from data import build_data  # stage 0's data (also train.build_data, as the notebooks call it)
from distributed import exit_cleanly, gather_dict, init_distributed
from job import Job
from runs import UsageError, as_iterations, autocast, unwrap  # noqa: F401 (train.UsageError, train.unwrap: notebooks)

EXPERIMENTS = ("table", "sweep", "noise")   # several runs: experiments.py
# --mode ripu, RIPU as published (Xie et al. 2022): its regions, five labelling rounds at 10k, 12k, ..., 18k of 40k
RIPU_ROUNDS = (0.25, 0.30, 0.35, 0.40, 0.45)


def modes():
    """Every --mode: the two without target labels, each selector of selection.SELECTORS in this pipeline (read when
    asked, so a selector registered there is a mode at once), RIPU as published and full supervision."""
    return ("source_only", "adaptseg", *selection.SELECTORS, "ripu", "supervised")


def selecting(mode):
    """Whether the mode buys labels with a selector (full supervision buys them all, without one)."""
    return mode in selection.SELECTORS or mode == "ripu"


def selector_of(mode):
    """The selector a labelling mode uses: its own entry of selection.SELECTORS, RIPU's regions for RIPU as
    published, every pixel for full supervision."""
    return selection.EVERY_PIXEL if mode == "supervised" else selection.SELECTORS[
        "ripu_regions" if mode == "ripu" else mode]


# ================================================================================================================
# 0. Set-up: arguments
# ================================================================================================================

def get_args(argv=None):
    mode, rest = build_parser().parse_known_args(argv)
    if mode.mode in EXPERIMENTS:  # their flags (--seeds, --budgets, --jobs) are experiments.py's
        words = [w for w in (argv if argv is not None else sys.argv[1:]) if w not in ("--mode", mode.mode)]
        raise UsageError(f"--mode {mode.mode} runs many runs: python experiments.py {mode.mode} {' '.join(words)}")
    args = build_parser().parse_args(argv)
    if args.resume:
        args = runs.resume_args(args)
    return apply_defaults(args)


def build_parser():
    """The flags in groups: the method with the paper's values, our additions, the data, the run, the benchmark
    (the last three from runs.py and bench.py). Every flag has its valid values (runs.py's
    types): a bad value is refused before any work starts."""
    p = runs.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument_group("the method (LabOR), with the paper's values").add_argument
    a("--mode", default="spl", help="one of " + ", ".join(modes()) + " (default: spl). ripu_regions and ripu_points: "
      "RIPU's selector (Xie et al. 2022) in this pipeline; ripu: RIPU as published (its rounds and losses); "
      "margin: A's smallest top-2 margin (Scheffer et al. 2001). Tables and sweeps: python experiments.py")
    a("--preset", default="synthetic", choices=["synthetic", "paper"],
      help="'synthetic': our CPU defaults for the built-in benchmark; 'paper': DeepLab-V2 settings of the paper "
           "(SGD 2.5e-4, momentum 0.9, wd 5e-4, poly 0.9; D: Adam 1e-4, betas (0.9, 0.99); 1280x720 / 1024x512)")
    a("--model", default=None, choices=["tiny", "deeplabv2"], help="paper: deeplabv2 (synthetic default: tiny)")
    a("--weights", default=None, help="DeepLab-V2 backbone weights: 'imagenet' (torchvision download, the paper's) or "
                                      "a file path to a torchvision resnet101 state dict (default none)")
    a("--ndf", type=runs.positive_int, default=None, help="discriminator width (paper 64; tiny default 16)")
    a("--iters", type=runs.positive_int, default=None,
      help="training iterations of stage 1 (paper 250000; synthetic default 500: a 4-minute run on 2 cores)")
    a("--batch-size", type=runs.positive_int, default=None, help="images per batch per domain (paper 1; synthetic 8)")
    a("--lr", type=runs.positive_float, default=None,
      help="SGD learning rate of A and B (paper 2.5e-4; synthetic 0.01)")
    a("--lr-d", type=runs.positive_float, default=None, help="Adam learning rate of D (paper 1e-4; synthetic 1e-3)")
    a("--momentum", type=runs.momentum, default=0.9, help="SGD momentum (paper 0.9)")
    a("--weight-decay", type=runs.non_negative_float, default=5e-4, help="SGD weight decay (paper 5e-4)")
    a("--power", type=runs.non_negative_float, default=0.9, help="poly learning-rate power (paper 0.9)")
    a("--gan", default="vanilla", choices=["vanilla", "ls"], help="adversarial loss (AdaptSegNet: vanilla)")
    a("--lambda-seg-aux", type=runs.non_negative_float, default=labor.LAMBDA_SEG_AUX,
      help="aux segmentation weight (0.1)")
    a("--lambda-adv", type=runs.non_negative_float, default=labor.LAMBDA_ADV_MAIN,
      help="Eq. 3 weight, main output (0.001)")
    a("--lambda-adv-aux", type=runs.non_negative_float, default=labor.LAMBDA_ADV_AUX,
      help="Eq. 3 weight, aux output (0.0002)")
    a("--lambda-target", type=runs.non_negative_float, default=1.0, help="Eq. 2 weight (1.0)")
    a("--lambda-dis", type=runs.non_negative_float, default=0.05,
      help="Eq. 6 weight in the selector's loss (not given in the paper). It sets the mask size: on the tuning "
           "split 0.05 / 0.2 / 0.5 gave masks of 1.5 / 7.4 / 15.9%% of the pixels; 0.05 is nearest the paper's "
           "2.2%% (default 0.05)")
    a("--iast-alpha", type=runs.unit_float, default=labor.IAST_ALPHA, help="IAST alpha (0.2)")
    a("--iast-beta", type=runs.unit_float, default=labor.IAST_BETA, help="IAST beta (0.9)")
    a("--iast-gamma", type=runs.non_negative_float, default=labor.IAST_GAMMA, help="IAST gamma (8.0 for GTA5)")
    a("--budget", type=runs.fraction, default=None,
      help="labelled fraction of pixels per image in (0, 1]: sets random, entropy, ripu_regions, ripu (default "
           "0.022, the paper's SPL budget); caps SPL, which by default labels its whole mask as in the paper "
           "(the cap is ours: --spl-cap)")
    a("--points", type=runs.positive_int, default=40, help="PPL (and ripu_points) points per image (paper 40)")
    a("--ppl-space", default="prob", choices=["prob", "feat"],
      help="PPL prototype space: the heads' mean softmax ('prob') or B's features ('feat') (default prob)")
    a("--seed", type=runs.seed, default=0, help="training seed (default 0)")

    a = p.add_argument_group("our additions, not in the paper (each chosen on the tuning split: "
                             "docs/experiments.md)").add_argument
    a("--schedule", default="staged", choices=["joint", "staged"],
      help="'staged' (our reading of the paper's Fig. 2): warm up A (Eq. 1, 3), then train B on that A's "
           "pseudo-labels with A fixed, select, and continue A with the labels (Eq. 1-3); 'joint': B trains beside "
           "A from the start and labels are bought at --select-at (default staged)")
    a("--warmup", type=runs.positive_float, default=0.5,
      help="staged: A's warm-up before selection, as iterations (>= 1) or a fraction of --iters (< 1) (default 0.5)")
    a("--selector-iters", type=runs.positive_float, default=0.5,
      help="staged: B's training iterations with A fixed, as iterations (>= 1) or a fraction of --iters (< 1) "
           "(default 0.5)")
    a("--selector-init", default="a", choices=["a", "scratch"],
      help="staged: B's backbone starts from A's warm-up weights ('a', the analogue of the paper's shared "
           "ImageNet start) or from a random start ('scratch') (default a)")
    a("--select-at", type=runs.non_negative_float, nargs="+", default=None,
      help="--schedule joint: labelling rounds, as iterations (>= 1) or fractions of --iters (< 1); several rounds "
           "split the budget (default 0.5: one round half-way). The staged schedule labels once, after --warmup")
    a("--spl-cap", default="random", choices=["random", "discrepancy"],
      help="which mask pixels SPL keeps when --budget is smaller than its mask: 'random' ones, spread over the "
           "mask, or the most 'discrepant' (per-pixel Eq. 6), which lie packed together (default random)")
    a("--ppl-cell", type=runs.non_negative_int, default=0,
      help="PPL: at most one point of a class per NxN block of the image (8 = A's output stride: one point per "
           "output cell); the paper's points may lie side by side. --points is then at most (default 0: the "
           "paper's rule, the nearest points wherever they lie)")
    a = p.add_argument_group("the annotator, not in the paper: what a label costs a person, and how people err "
                             "(cost.py)").add_argument
    a("--seconds-per-point", type=runs.positive_float, default=cost.SECONDS_PER_POINT,
      help="seconds for one point with its class, or one label for a whole region (Bearman et al. 2016: 2.4)")
    a("--seconds-per-click", type=runs.positive_float, default=cost.SECONDS_PER_POLYGON_CLICK,
      help="seconds per polygon vertex or boundary crossing (Cityscapes: over 1.5 h / 1,713 clicks = 3.2)")
    a("--contour-tolerance", type=runs.positive_float, default=cost.CONTOUR_TOLERANCE,
      help="pixels a traced polygon may stray from an outline (default 0.75)")
    a("--annotator-noise", type=runs.unit_float, default=0.0,
      help="probability that a label near a class boundary (--noise-band) is the class on the other side "
           "(default 0: the perfect annotator)")
    a("--noise-band", type=runs.positive_int, default=1,
      help="--annotator-noise: how many pixels from a class boundary a label may go wrong (default 1)")
    runs.add_data_flags(p)      # the synthetic benchmark; real data
    runs.add_run_flags(p)       # --device, --out, --threads, --quiet, --save-every, --resume, --init-from, --amp, ...
    bench.add_flags(p)          # --benchmark N, --profile, --peak-tflops
    return p


def apply_defaults(args):
    """Fill what depends on the preset, and check every value (a UsageError names what is wrong)."""
    if args.mode not in modes():
        raise UsageError(f"unknown --mode {args.mode!r}; choose one of: {', '.join(modes())}")
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
    if args.init_from and not args.resume and not shares_warmup(args):
        raise UsageError(f"--init-from: only a staged run that adapts A alone before its labels (adaptseg or a "
                         f"selector, not --mode {args.mode} under --schedule {args.schedule}) starts from another's "
                         f"warm-up")
    if args.budget_from and (not selecting(args.mode) or selector_of(args.mode).budget != "fraction"):
        raise UsageError(f"--budget-from sets a fraction of the pixels, which --mode {args.mode} does not buy")
    runs.check_args(args)  # the schedule's iterations, data folders, weights file, device, --resume
    return args


def select_iterations(args):
    """The labelling rounds as sorted iteration numbers in [0, iters): the end of the warm-up (staged), or
    --select-at (joint); [0] for supervised (every label before training); none for the modes that buy none.
    (runs.check_args has checked them.)"""
    if args.mode == "supervised":
        return [0]
    if not selecting(args.mode):
        return []
    if args.mode == "ripu":
        return sorted({as_iterations(f, args.iters) for f in RIPU_ROUNDS})
    if args.schedule == "staged":
        return [as_iterations(args.warmup, args.iters)]
    return sorted({as_iterations(s, args.iters) for s in args.select_at})


def shares_warmup(args):
    """Staged runs that adapt A alone before buying labels (and adaptseg, which buys none) train one and the same
    warm-up for a seed: one run trains it (its warmup.pt), the others can start from it (--init-from)."""
    return args.schedule == "staged" and (selecting(args.mode) or args.mode == "adaptseg") and args.mode != "ripu"


# ================================================================================================================
# 0. Set-up: models and optimisers
# ================================================================================================================

def build_models(args, num_classes):
    """A (segmentation), B (pixel selector, for the selectors that read it: SPL, PPL), D_main and D_aux (Eq. 3, not
    for source-only and supervised). Same seed -> same initial A in every mode, so the modes differ only in what
    they learn from."""
    torch.manual_seed(args.seed)
    backbone = lambda: models.make_backbone(args.model, args.weights, args.width)  # noqa: E731
    net = {"A": models.SegModel(backbone(), num_classes, aux=True)}
    if args.mode not in ("source_only", "supervised", "ripu"):  # (RIPU as published has no adversarial loss)
        net["D"] = models.FCDiscriminator(num_classes, args.ndf)
        net["D_aux"] = models.FCDiscriminator(num_classes, args.ndf)
    if selecting(args.mode) and selector_of(args.mode).needs_b:
        torch.manual_seed(args.seed + 1)
        net["B"] = models.PixelSelector(backbone(), num_classes)
    return net


def build_optimisers(args, net):
    """SGD for A and B (backbone at lr, heads at 10 lr, as DeepLab-V2), Adam for the discriminators."""
    sgd = dict(lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    opt = {k: torch.optim.SGD(unwrap(net[k]).param_groups(args.lr), **sgd) for k in ("A", "B") if k in net}
    for k in ("D", "D_aux"):
        if k in net:
            opt[k] = torch.optim.Adam(net[k].parameters(), lr=args.lr_d, betas=(0.9, 0.99))
    return opt


def poly_lr(opt, base_lr, it, max_it, power):
    """DeepLab's poly schedule: lr = base_lr * (1 - it / max_it) ** power (times each group's lr_mult)."""
    scale = (1 - it / max_it) ** power
    for g in opt.param_groups:
        g["lr"] = base_lr * scale * g.get("lr_mult", 1.0)


# ================================================================================================================
# 1. Adaptation: one iteration of A, D and B
# ================================================================================================================

def train_step(args, net, opt, theta, batch_s, batch_t, y_t, scaler=None):
    """One LabOR iteration. Returns the losses (floats) and the updated IAST thresholds theta.

    batch_s = (x_s, y_s) source images and labels; batch_t = (x_t, idx) target images; y_t = revealed target
    labels of those images (B, H, W), 255 where unlabelled, or None before the first labelling round.
    With --amp the forward passes run under autocast (bf16; or fp16, with the GradScaler `scaler`).
    """
    A = net["A"]
    x_s, y_s = batch_s
    x_t, _ = batch_t
    x_s = x_s.contiguous(memory_format=args.memory_format)                          # (B, 3, Hs, Ws)
    x_t = x_t.contiguous(memory_format=args.memory_format)                          # (B, 3, Ht, Wt)
    size_t = x_t.shape[-2:]
    scaler = scaler or torch.amp.GradScaler(enabled=False)
    losses = {}

    # ---- model A: Eq. 1 (source), Eq. 2 (revealed target), Eq. 3 (fool D) -----------------------------------
    opt["A"].zero_grad(set_to_none=True)
    with autocast(args):
        loss_a = 0.0
        if args.mode != "supervised":
            logits_s, logits_s_aux = A(x_s)                                         # (B, C, Hs/8, Ws/8) each
            loss_seg = labor.seg_loss(logits_s, y_s) + args.lambda_seg_aux * labor.seg_loss(logits_s_aux, y_s)
            loss_a = loss_a + loss_seg
            losses["loss_seg"] = loss_seg.item()
        if y_t is not None or "D" in net or "B" in net or args.mode == "ripu":  # (source-only never looks at target)
            logits_t, logits_t_aux = A(x_t)                                         # (B, C, Ht/8, Wt/8) each
        if y_t is not None:
            loss_tgt = labor.seg_loss(logits_t, y_t) + args.lambda_seg_aux * labor.seg_loss(logits_t_aux, y_t)
            loss_a = loss_a + args.lambda_target * loss_tgt
            losses["loss_tgt"] = loss_tgt.item()
        if "D" in net:
            # D sees softmax maps at image size (AdaptSegNet upsamples before the discriminator)
            prob_t = F.softmax(labor.upsample(logits_t, size_t), dim=1)             # (B, C, Ht, Wt)
            prob_t_aux = F.softmax(labor.upsample(logits_t_aux, size_t), dim=1)     # (B, C, Ht, Wt)
            with frozen(net["D"], net["D_aux"]) as (D, D_aux):
                loss_adv = labor.adv_generator_loss(D(prob_t), args.gan)
                loss_adv_aux = labor.adv_generator_loss(D_aux(prob_t_aux), args.gan)
            loss_a = loss_a + args.lambda_adv * loss_adv + args.lambda_adv_aux * loss_adv_aux
            losses["loss_adv"] = loss_adv.item()
        if args.mode == "ripu":  # not LabOR: RIPU's own two losses (labor.py), for "RIPU as published" only
            loss_nl = labor.negative_learning_loss(F.softmax(labor.upsample(logits_t, size_t), dim=1))
            loss_cr = labor.local_consistency_loss(F.softmax(labor.upsample(logits_s, x_s.shape[-2:]), dim=1), y_s)
            loss_a = loss_a + labor.RIPU_LAMBDA_NL * loss_nl + labor.RIPU_LAMBDA_CR * loss_cr
            losses.update(loss_nl=loss_nl.item(), loss_cr=loss_cr.item())
    scaler.scale(loss_a).backward()
    scaler.step(opt["A"])

    # ---- discriminators: Eq. 3, source vs target, on detached predictions -----------------------------------
    if "D" in net:
        for key, ls, pt in (("D", logits_s, prob_t), ("D_aux", logits_s_aux, prob_t_aux)):
            opt[key].zero_grad(set_to_none=True)
            with autocast(args):
                # each domain's maps at its own image size (AdaptSegNet); the target's are A's step's own, detached
                prob_s = F.softmax(labor.upsample(ls.detach(), x_s.shape[-2:]), dim=1)     # (B, C, Hs, Ws)
                d_s, d_t = discriminate(net[key], prob_s, pt.detach())                 # (B, 1, h, w) each
                loss_d = labor.adv_discriminator_loss(d_s, d_t, args.gan)
            scaler.scale(loss_d).backward()
            scaler.step(opt[key])
            losses["loss_" + key] = loss_d.item()

    # ---- pixel selector B beside A (joint schedule): Eq. 5 on A's pseudo-labels and Eq. 6 ------------------------
    if "B" in net and args.schedule == "joint":
        losses_b, theta = selector_step(args, net["B"], opt["B"], theta, x_t, logits_t.detach(), scaler)
        losses.update(losses_b)
    scaler.update()
    return losses, theta


def discriminate(D, prob_s, prob_t):
    """D's outputs on the source and the target maps: one call on both when they have one size (a DDP module runs
    one forward per backward), one each when they differ (the paper preset: 1280x720 and 1024x512)."""
    if prob_s.shape[1:] == prob_t.shape[1:]:
        d_out = D(torch.cat([prob_s, prob_t]))                                              # (2B, 1, h, w)
        return d_out[:len(prob_s)], d_out[len(prob_s):]
    return D(prob_s), D(prob_t)


@contextlib.contextmanager
def frozen(*modules):
    """Inside, the modules' weights need no gradient: A's step back-propagates through D to A only, as
    AdaptSegNet does by setting D's requires_grad to False (D's own step follows). Yields the bare modules,
    outside DDP, whose gradient sync would wait for weight gradients that never come."""
    bare = [unwrap(m) for m in modules]
    weights = [w for m in bare for w in m.parameters() if w.requires_grad]
    for w in weights:
        w.requires_grad_(False)
    try:
        yield bare
    finally:
        for w in weights:
            w.requires_grad_(True)


def selector_step(args, B, opt_b, theta, x_t, logits_a, scaler):
    """One step of the pixel selector B: it learns A's pseudo-labels (Eq. 5, IAST class-wise thresholds theta)
    while its two heads are pushed apart (Eq. 6). logits_a: A's logits on the target images x_t, no gradient.
    Returns the losses (floats) and the updated theta."""
    size_t = x_t.shape[-2:]
    with torch.no_grad():
        prob_a = F.softmax(labor.upsample(logits_a.float(), size_t), dim=1)               # (B, C, Ht, Wt)
        theta = labor.iast_update(prob_a, theta, args.iast_alpha, args.iast_beta, args.iast_gamma)
        y_hat = labor.pseudo_labels(prob_a, theta)                                         # (B, Ht, Wt)
    opt_b.zero_grad(set_to_none=True)
    with autocast(args):
        logits1, logits2, _, d1, d2 = B(x_t, heads_on_detached=True)
        loss_pseudo = labor.pseudo_label_loss(logits1, logits2, y_hat)
        loss_dis = labor.discrepancy(d1, d2)   # heads on detached features: only F1, F2 maximise it
    scaler.scale(loss_pseudo - args.lambda_dis * loss_dis).backward()
    scaler.step(opt_b)
    return {"loss_pseudo": loss_pseudo.item(), "loss_dis": loss_dis.item(),
            "pseudo_fraction": (y_hat != labor.IGNORE_INDEX).float().mean().item()}, theta


def train_selector(args, net, opt, scaler, theta, target_images, state):
    """Stage 1b of the staged schedule (the paper's Fig. 2): A is fixed after its warm-up; B learns that A's
    pseudo-labels (Eq. 5) and pulls its heads apart (Eq. 6) for --selector-iters iterations. With
    --selector-init a, B's backbone starts from A's (the paper's B starts from A's ImageNet weights; here A's
    warm-up weights are the nearest analogue); its heads keep their own random start. Returns theta."""
    A, B = unwrap(net["A"]), net["B"]
    if args.selector_init == "a":
        unwrap(B).backbone.load_state_dict(A.backbone.state_dict())
    A.eval()  # A is fixed: its pseudo-labels come from the model as it will be evaluated
    n = as_iterations(args.selector_iters, args.iters)
    batches = runs.stream(target_images, args, args.seed * 2 + 2, 0, args.device)
    for k in tqdm(range(n), desc=f"{args.mode}: selector B", disable=args.rank != 0 or args.quiet, leave=False):
        poly_lr(opt["B"], args.lr, k, n, args.power)
        x_t, _ = next(batches)
        with torch.no_grad(), autocast(args):
            logits_a = A(x_t)[0]                                                          # (B, C, Ht/8, Wt/8)
        losses, theta = selector_step(args, B, opt["B"], theta, x_t, logits_a, scaler)
        scaler.update()
        if (k + 1) % args.log_every == 0 or k + 1 == n:
            state["selector_history"].append({"selector_iter": k + 1, **losses})
    A.train()
    return theta


# ================================================================================================================
# 2. Selection: B (or a baseline) over the whole target-train set, the annotator reveals labels
# ================================================================================================================

@torch.no_grad()
def select_round(args, net, target_images, annotator, revealed, r, n_rounds, classes):
    """Labelling round r of n_rounds over every target-train image: the mode's selector (selection.SELECTORS)
    chooses pixels from A's prediction and, for SPL and PPL, B's two heads, all at image size; the annotator reveals
    their labels into `revealed`. Returns (masks, required, a_wrong): the inconsistency masks (Eq. 4) of the
    figures' images; what the bought labels fix (selection.RequiredCounter's summary); where A was wrong on them.
    Under torchrun each rank chooses for its share of the images and the choices are gathered: every image is
    labelled once, as in a single-process run."""
    mods = {k: unwrap(m).eval() for k, m in net.items()}  # plain modules: no collective calls per forward
    sel = selector_of(args.mode)
    budget = args.points if sel.budget == "points" else (sel.default_budget if args.budget is None else args.budget)
    options = dict(spl_cap=args.spl_cap, ppl_cell=args.ppl_cell, ppl_space=args.ppl_space)
    chosen, masks, pred_bought = {}, {}, {}
    for x_t, idx in tqdm(runs.rank_share(target_images, args), desc=f"selection {r + 1}/{n_rounds}", leave=False,
                         disable=args.rank != 0 or args.quiet):
        x_t = x_t.to(args.device, non_blocking=True)
        size = x_t.shape[-2:]
        exclude = revealed.mask(idx.tolist(), args.device) if r > 0 else None   # no pixel bought twice
        seeds = [runs.hash_seed(args.seed, r, i) for i in idx.tolist()]         # random picks, per image
        heads = None
        with autocast(args):
            logits_a = mods["A"](x_t)[0]                       # A at selection time: was each label required?
            if sel.needs_b:
                logits1, logits2, feat = mods["B"](x_t)
        logits_a = labor.upsample(logits_a.float(), size)                                 # (B, C, H, W)
        if sel.needs_b:
            p1 = labor.upsample(logits1.float(), size)                                   # (B, C, H, W)
            p2 = labor.upsample(logits2.float(), size)                                   # (B, C, H, W)
            heads = (p1, p2, feat)
            for i, m in zip(idx.tolist(), selection.inconsistency_mask(p1, p2).cpu()):   # Eq. 4, for the figures
                if i < figures.FIGURE_ROWS:
                    masks[i] = m
        pick = sel.select(selection.Round(logits_a, heads, exclude, seeds, budget, r, n_rounds, options))
        for i, m, p in zip(idx.tolist(), pick.cpu(), logits_a.argmax(dim=1).cpu()):
            chosen[i], pred_bought[i] = m, p[m].to(torch.uint8)   # A's prediction on the bought pixels only
    chosen, pred_bought = gather_dict(args, chosen), gather_dict(args, pred_bought)
    seconds = dict(seconds_per_point=args.seconds_per_point, seconds_per_click=args.seconds_per_click,
                   tolerance=args.contour_tolerance)   # what the labels cost a person (cost.py)
    required, a_wrong = selection.buy(annotator, revealed, chosen, pred_bought, classes, range(figures.FIGURE_ROWS),
                                      sel.kind, seconds)
    for m in mods.values():
        m.train()
    return gather_dict(args, masks), required, a_wrong


# ================================================================================================================
# 3. Evaluation: mIoU of A on target val
# ================================================================================================================

@torch.no_grad()
def evaluate(args, A, dataset, num_classes):
    """Confusion matrix over the whole split (predictions upsampled to label size), then per-class IoU and mIoU.
    A class absent from both ground truth and predictions has no IoU (NaN) and is left out of the mean."""
    A.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=args.device)
    for x, y in tqdm(runs.rank_share(dataset, args), desc="evaluation", leave=False,
                     disable=args.rank != 0 or args.quiet):
        x, y = x.to(args.device), y.to(args.device)
        pred = labor.upsample(A(x)[0], y.shape[-2:]).argmax(dim=1)                       # (B, H, W)
        valid = y != labor.IGNORE_INDEX
        conf += torch.bincount(y[valid] * num_classes + pred[valid],
                               minlength=num_classes ** 2).reshape(num_classes, num_classes)
    if args.world > 1:
        torch.distributed.all_reduce(conf)
    A.train()
    return labor.iou_from_confusion(conf.cpu())


# ================================================================================================================
# The run: the algorithm box
# ================================================================================================================

def adapt(args, net, opt, theta, revealed, streams, until, job):
    """Stage 1 from where the run stands up to iteration `until`: one train_step per iteration (A, D; B too under
    --schedule joint), with the revealed target labels as Eq. 2's once there are some. Ends with a checkpoint (before
    a labelling round, the one a run killed in the round resumes from). Returns theta."""
    source, target = streams
    for it in job.iterations(until):
        for k, o in opt.items():
            poly_lr(o, args.lr_d if k.startswith("D") else args.lr, it, args.iters, args.power)
        batch_s, batch_t = next(source), next(target)
        y_t = revealed.batch(batch_t[1].tolist(), args.device) if revealed.pixels else None  # Eq. 2's labels
        losses, theta = train_step(args, net, opt, theta, batch_s, batch_t, y_t, job.scaler)
        job.record(it, losses, theta, revealed)  # log lines, checkpoints; a stop signal ends the run here
    job.checkpoint(theta, revealed)
    return theta


@runs.stop_on_signal  # SIGTERM / SIGINT: a checkpoint at the next iteration boundary, then exit 128 + n (job.py)
def run(args):
    """One run of args.mode: warm up A, train B on it, let the selector choose and the annotator reveal, adapt A
    with the labels, evaluate. Returns the metrics (also written to metrics.json). `job` is what a run needs besides
    the method: the folder, checkpoints, resume, --init-from, stop signals, torchrun, the outputs (job.py)."""
    job = Job(args, shares_warmup(args))   # (a run whose warm-up the seed's other runs may start from: warmup.pt)

    # ---- 0. set-up ------------------------------------------------------------------------------------------------
    source, target, evals, classes = build_data(args)      # target-train labels: for the annotator, nowhere else
    target_images = data.ImagesOnly(target)                 # all the trainer may see of target train ...
    annotator = selection.Annotator(lambda i, labelled=target: labelled[i][1],  # ... and the door to its labels
                                    args.annotator_noise, args.noise_band, args.seed)
    del target                                              # (no other name for the labelled set in this scope)
    net = {k: m.to(args.device, memory_format=args.memory_format)
           for k, m in build_models(args, len(classes)).items()}
    opt = build_optimisers(args, net)
    theta = torch.full((len(classes),), labor.IAST_THETA0, device=args.device)   # Eq. 5's class-wise thresholds
    revealed = selection.RevealedLabels(target_images[0][0].shape[-2:])          # Eq. 2's target labels: none yet
    net, theta, revealed = job.start(net, opt, annotator, target_images, theta, revealed)  # or a stopped run's
    streams = job.stream(source, 0), job.stream(target_images, 1)
    rounds = select_iterations(args)  # the labelling rounds, as iterations of stage 1

    # ---- 1. adaptation up to each labelling round, 1b. the selector B, 2. the round ---------------------------------
    for r, at in job.rounds_to_buy(rounds):
        theta = adapt(args, net, opt, theta, revealed, streams, at, job)   # before the first round: A's warm-up
        if "B" in net and args.schedule == "staged" and not job.selector_trained:   # (--init-from may bring it)
            with job.timed("selector"):                    # 1b. B learns the warmed-up A's pseudo-labels
                theta = train_selector(args, net, opt, job.scaler, theta, target_images, job.state)
        with job.timed("selection"):                       # 2. the selector chooses, the annotator reveals
            found = select_round(args, net, target_images, annotator, revealed, r, len(rounds), classes)
        job.bought(r, len(rounds), found, theta, revealed)
    theta = adapt(args, net, opt, theta, revealed, streams, args.iters, job)   # 1. A with the labels too (Eq. 2)

    # ---- 3. evaluation: the final A (no checkpoint is ever chosen on the evaluation split) -----------------------
    A = job.evaluation_model()
    miou, ious = evaluate(args, A, evals, len(classes))

    # ---- 4. outputs ------------------------------------------------------------------------------------------------
    return job.finish(A, theta, revealed, miou, ious, classes, evals)


def main(argv=None):
    """The command line: one run or the benchmark. A user's mistake ends as one `error:` line and exit code 2, a
    SIGTERM or Ctrl-C as a checkpoint and 128 + the signal (distributed.exit_cleanly)."""
    def work():
        args = get_args(argv)
        init_distributed(args)
        if args.benchmark:
            bench.benchmark(args, build_models, build_optimisers, train_step)
        else:
            run(args)

    exit_cleanly(work)


if __name__ == "__main__":
    main()
