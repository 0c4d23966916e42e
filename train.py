"""LabOR end to end: one script, read top to bottom beside the paper (Shin et al., ICCV 2021, Sec. 3).

    python train.py --mode spl            # LabOR with segment-based labelling on the synthetic benchmark
    python train.py --mode ppl            # ... with point-based labelling (many runs: python -m tools.experiments)

`run` at the bottom is the algorithm box (the paper's Fig. 2), each step a call:
  0. set-up       arguments, data, models A, B, D and their optimisers
  1. adaptation   `adapt`: A learns from source labels (Eq. 1) and fools D on target (Eq. 3); once target labels
                  exist A learns from them too (Eq. 2). Before the first labelling round: A's warm-up.
  1b. selector    `train_selector`: B learns the warmed-up A's pseudo-labels (Eq. 5) with A fixed while its two
                  heads are pushed apart (Eq. 6) (--schedule staged, the paper's Fig. 2; joint: B beside A in 1)
  2. selection    `select_round`: a selector (SPL, PPL, a baseline: selection.SELECTORS) looks at every target-train
                  image, the annotator reveals the labels it asks for; then 1 continues with them (a person in
                  Label Studio answers between its halves, `choose` and `buy_round`: docs/annotating.md)
  3. evaluation   `evaluate`: A on target val, mIoU from one confusion matrix, the final model only
  4. outputs      metrics.json, checkpoint, selection, figures in the run folder

The method's functions (train_step, selector_step, select_round, evaluate) take the settings and, optionally, a
runtime (tools.runtime.Runtime: device, precision, ranks; default one CPU process in fp32), so a notebook calls them
with a plain namespace. The plumbing lives in tools/: flags (every flag, the paper's values), job (what a run does
around the method: its folder, checkpoints, resume, stop signals, outputs), runtime, distributed (torchrun), bench
(--benchmark); python -m tools.experiments runs many runs (tables, sweeps). What each --mode does is
selection.modes()'s table.
"""
import contextlib

import torch
import torch.nn.functional as F
from tqdm import tqdm

import data
import labor
import models
import selection
from data import build_data  # stage 0's data (also train.build_data, as the notebooks call it)
from tools import UsageError, bench  # noqa: F401 (train.UsageError: the notebooks)
from tools.distributed import exit_cleanly, gather_dict, init_distributed
from tools.figures import FIGURE_ROWS
from tools.flags import as_iterations, get_args
from tools.job import Job
from tools.runtime import Runtime, autocast, hash_seed, rank_share, setup, stop_on_signal, stream, unwrap

CPU = Runtime()   # the method's functions run on one CPU process in fp32 unless given the run's runtime

# ================================================================================================================
# 0. Set-up: models and optimisers
# ================================================================================================================

def build_models(args, num_classes):
    """A (segmentation), B (pixel selector, for the selectors that read it: SPL, PPL), D_main and D_aux (Eq. 3, not
    for source-only and supervised). Same seed -> same initial A in every mode, so the modes differ only in what
    they learn from."""
    mode = selection.modes()[args.mode]
    torch.manual_seed(args.seed)
    backbone = lambda: models.make_backbone(args.model, args.weights, args.width)  # noqa: E731
    net = {"A": models.SegModel(backbone(), num_classes, aux=True)}
    if mode.adversarial:
        net["D"] = models.FCDiscriminator(num_classes, args.ndf)
        net["D_aux"] = models.FCDiscriminator(num_classes, args.ndf)
    if mode.selector is not None and mode.selector.needs_b:
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

def train_step(args, net, opt, theta, batch_s, batch_t, y_t, scaler=None, rt=CPU):
    """One LabOR iteration. Returns the losses (floats) and the updated IAST thresholds theta.

    batch_s = (x_s, y_s) source images and labels; batch_t = (x_t, idx) target images; y_t = revealed target
    labels of those images (B, H, W), 255 where unlabelled, or None before the first labelling round.
    With --amp (rt.amp_dtype) the forward passes run under autocast (bf16; or fp16, with the GradScaler `scaler`).
    What the mode adds or leaves out is selection.modes()'s row: Eq. 1 (source), Eq. 3 (D), a method's own terms.
    """
    mode = selection.modes()[args.mode]
    A = net["A"]
    x_s, y_s = batch_s
    x_t, _ = batch_t
    x_s = x_s.contiguous(memory_format=rt.memory_format)                          # (B, 3, Hs, Ws)
    x_t = x_t.contiguous(memory_format=rt.memory_format)                          # (B, 3, Ht, Wt)
    size_t = x_t.shape[-2:]
    scaler = scaler or torch.amp.GradScaler(enabled=False)
    losses = {}

    # ---- model A: Eq. 1 (source), Eq. 2 (revealed target), Eq. 3 (fool D) -----------------------------------
    opt["A"].zero_grad(set_to_none=True)
    with autocast(rt):
        loss_a = 0.0
        if mode.source:
            logits_s, logits_s_aux = A(x_s)                                         # (B, C, Hs/8, Ws/8) each
            loss_seg = labor.seg_loss(logits_s, y_s) + args.lambda_seg_aux * labor.seg_loss(logits_s_aux, y_s)
            loss_a = loss_a + loss_seg
            losses["loss_seg"] = loss_seg.item()
        if y_t is not None or "D" in net or "B" in net or mode.extra_loss:  # (source-only never looks at target)
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
        if mode.extra_loss:  # not LabOR: another method's own terms (RIPU as published: labor.ripu_losses)
            for name, (weight, term) in mode.extra_loss(logits_s, y_s, logits_t, size_t).items():
                loss_a = loss_a + weight * term
                losses[name] = term.item()
    scaler.scale(loss_a).backward()
    scaler.step(opt["A"])

    # ---- discriminators: Eq. 3, source vs target, on detached predictions -----------------------------------
    if "D" in net:
        for key, ls, pt in (("D", logits_s, prob_t), ("D_aux", logits_s_aux, prob_t_aux)):
            opt[key].zero_grad(set_to_none=True)
            with autocast(rt):
                # each domain's maps at its own image size (AdaptSegNet); the target's are A's step's own, detached
                prob_s = F.softmax(labor.upsample(ls.detach(), x_s.shape[-2:]), dim=1)     # (B, C, Hs, Ws)
                d_s, d_t = discriminate(net[key], prob_s, pt.detach())                 # (B, 1, h, w) each
                loss_d = labor.adv_discriminator_loss(d_s, d_t, args.gan)
            scaler.scale(loss_d).backward()
            scaler.step(opt[key])
            losses["loss_" + key] = loss_d.item()

    # ---- pixel selector B beside A (joint schedule): Eq. 5 on A's pseudo-labels and Eq. 6 ------------------------
    if "B" in net and args.schedule == "joint":
        losses_b, theta = selector_step(args, net["B"], opt["B"], theta, x_t, logits_t.detach(), scaler, rt)
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


def selector_step(args, B, opt_b, theta, x_t, logits_a, scaler, rt=CPU):
    """One step of the pixel selector B: it learns A's pseudo-labels (Eq. 5, IAST class-wise thresholds theta)
    while its two heads are pushed apart (Eq. 6). logits_a: A's logits on the target images x_t, no gradient.
    Returns the losses (floats) and the updated theta."""
    size_t = x_t.shape[-2:]
    with torch.no_grad():
        prob_a = F.softmax(labor.upsample(logits_a.float(), size_t), dim=1)               # (B, C, Ht, Wt)
        theta = labor.iast_update(prob_a, theta, args.iast_alpha, args.iast_beta, args.iast_gamma)
        y_hat = labor.pseudo_labels(prob_a, theta)                                         # (B, Ht, Wt)
    opt_b.zero_grad(set_to_none=True)
    with autocast(rt):
        logits1, logits2, _, d1, d2 = B(x_t, heads_on_detached=True)
        loss_pseudo = labor.pseudo_label_loss(logits1, logits2, y_hat)
        loss_dis = labor.discrepancy(d1, d2)   # heads on detached features: only F1, F2 maximise it
    scaler.scale(loss_pseudo - args.lambda_dis * loss_dis).backward()
    scaler.step(opt_b)
    return {"loss_pseudo": loss_pseudo.item(), "loss_dis": loss_dis.item(),
            "pseudo_fraction": (y_hat != labor.IGNORE_INDEX).float().mean().item()}, theta


def train_selector(args, net, opt, scaler, theta, target_images, state, rt=CPU):
    """Stage 1b of the staged schedule (the paper's Fig. 2): A is fixed after its warm-up; B learns that A's
    pseudo-labels (Eq. 5) and pulls its heads apart (Eq. 6) for --selector-iters iterations. With
    --selector-init a, B's backbone starts from A's (the paper's B starts from A's ImageNet weights; here A's
    warm-up weights are the nearest analogue); its heads keep their own random start. Returns theta."""
    A, B = unwrap(net["A"]), net["B"]
    if args.selector_init == "a":
        unwrap(B).backbone.load_state_dict(A.backbone.state_dict())
    A.eval()  # A is fixed: its pseudo-labels come from the model as it will be evaluated
    n = as_iterations(args.selector_iters, args.iters)
    batches = stream(target_images, args, rt, args.seed * 2 + 2, 0)
    for k in tqdm(range(n), desc=f"{args.mode}: selector B", disable=rt.quiet, leave=False):
        poly_lr(opt["B"], args.lr, k, n, args.power)
        x_t, _ = next(batches)
        with torch.no_grad(), autocast(rt):
            logits_a = A(x_t)[0]                                                          # (B, C, Ht/8, Wt/8)
        losses, theta = selector_step(args, B, opt["B"], theta, x_t, logits_a, scaler, rt)
        scaler.update()
        if (k + 1) % args.log_every == 0 or k + 1 == n:
            state["selector_history"].append({"selector_iter": k + 1, **losses})
    A.train()
    return theta


# ================================================================================================================
# 2. Selection: B (or a baseline) over the whole target-train set, the annotator reveals labels
# ================================================================================================================

@torch.no_grad()
def choose(args, net, target_images, revealed, r, n_rounds, rt=CPU):
    """The first half of labelling round r of n_rounds over every target-train image: the mode's selector
    (selection.SELECTORS) chooses pixels from A's prediction and, for SPL and PPL, B's two heads, all at image size.
    Returns a selection.Query: the chosen pixels, A's prediction on them, the inconsistency masks (Eq. 4) of the
    figures' images. Under torchrun each rank chooses for its share of the images and the choices are gathered:
    every image is asked about once, as in a single-process run."""
    mods = {k: unwrap(m).eval() for k, m in net.items()}  # plain modules: no collective calls per forward
    sel = selection.modes()[args.mode].selector
    budget = args.points if sel.budget == "points" else (sel.default_budget if args.budget is None else args.budget)
    options = dict(spl_cap=args.spl_cap, ppl_cell=args.ppl_cell, ppl_space=args.ppl_space)
    chosen, masks, pred_bought = {}, {}, {}
    for x_t, idx in tqdm(rank_share(target_images, args, rt), desc=f"selection {r + 1}/{n_rounds}", leave=False,
                         disable=rt.quiet):
        x_t = x_t.to(rt.device, non_blocking=True)
        size = x_t.shape[-2:]
        exclude = revealed.mask(idx.tolist(), rt.device) if r > 0 else None     # no pixel bought twice
        seeds = [hash_seed(args.seed, r, i) for i in idx.tolist()]              # random picks, per image
        heads = None
        with autocast(rt):
            logits_a = mods["A"](x_t)[0]                       # A at selection time: was each label required?
            if sel.needs_b:
                logits1, logits2, feat = mods["B"](x_t)
        logits_a = labor.upsample(logits_a.float(), size)                                 # (B, C, H, W)
        if sel.needs_b:
            p1 = labor.upsample(logits1.float(), size)                                   # (B, C, H, W)
            p2 = labor.upsample(logits2.float(), size)                                   # (B, C, H, W)
            heads = (p1, p2, feat)
            for i, m in zip(idx.tolist(), selection.inconsistency_mask(p1, p2).cpu()):   # Eq. 4, for the figures
                if i < FIGURE_ROWS:
                    masks[i] = m
        pick = sel.select(selection.Round(logits_a, heads, exclude, seeds, budget, r, n_rounds, options))
        for i, m, p in zip(idx.tolist(), pick.cpu(), logits_a.argmax(dim=1).cpu()):
            chosen[i], pred_bought[i] = m, p[m].to(torch.uint8)   # A's prediction on the bought pixels only
    for m in mods.values():
        m.train()
    return selection.Query(gather_dict(rt, chosen), gather_dict(rt, pred_bought), gather_dict(rt, masks))


def buy_round(args, query, annotator, revealed, classes):
    """The second half: the annotator reveals the labels of the chosen pixels into `revealed` (selection.buy).
    Returns (masks, required, a_wrong): the figures' inconsistency masks; what the bought labels fix
    (selection.RequiredCounter's summary, with what they cost a person: cost.py); where A was wrong on them."""
    seconds = dict(seconds_per_point=args.seconds_per_point, seconds_per_click=args.seconds_per_click,
                   tolerance=args.contour_tolerance)   # what the labels cost a person (cost.py)
    kind = selection.modes()[args.mode].selector.kind
    required, a_wrong = selection.buy(annotator, revealed, query.chosen, query.pred_a, classes, range(FIGURE_ROWS),
                                      kind, seconds)
    return query.masks, required, a_wrong


def select_round(args, net, target_images, annotator, revealed, r, n_rounds, classes, rt=CPU):
    """Labelling round r of n_rounds over every target-train image: `choose` the pixels, then `buy_round` their
    labels from the annotator. Returns buy_round's (masks, required, a_wrong). (With a person in Label Studio the run
    stops between the two halves: train.run.)"""
    return buy_round(args, choose(args, net, target_images, revealed, r, n_rounds, rt), annotator, revealed, classes)


# ================================================================================================================
# 3. Evaluation: mIoU of A on target val
# ================================================================================================================

@torch.no_grad()
def evaluate(args, A, dataset, num_classes, rt=CPU):
    """Confusion matrix over the whole split (predictions upsampled to label size), then per-class IoU and mIoU.
    A class absent from both ground truth and predictions has no IoU (NaN) and is left out of the mean."""
    A.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=rt.device)
    for x, y in tqdm(rank_share(dataset, args, rt), desc="evaluation", leave=False, disable=rt.quiet):
        x, y = x.to(rt.device), y.to(rt.device)
        pred = labor.upsample(A(x)[0], y.shape[-2:]).argmax(dim=1)                       # (B, H, W)
        valid = y != labor.IGNORE_INDEX
        conf += torch.bincount(y[valid] * num_classes + pred[valid],
                               minlength=num_classes ** 2).reshape(num_classes, num_classes)
    if rt.world > 1:
        torch.distributed.all_reduce(conf)
    A.train()
    return labor.iou_from_confusion(conf.cpu())


# ================================================================================================================
# The run: the algorithm box
# ================================================================================================================

def select_iterations(args):
    """The labelling rounds as sorted iteration numbers in [0, iters): the mode's own (RIPU's five; supervised: 0,
    every label before training), else the end of the warm-up (staged) or --select-at (joint); none for a mode
    that buys no labels. (tools.flags has checked them.)"""
    mode = selection.modes()[args.mode]
    if mode.selector is None:
        return []
    rounds = mode.rounds or ([args.warmup] if args.schedule == "staged" else args.select_at)
    return sorted({as_iterations(f, args.iters) for f in rounds})


def adapt(args, net, opt, theta, revealed, streams, until, job):
    """Stage 1 from where the run stands up to iteration `until`: one train_step per iteration (A, D; B too under
    --schedule joint), with the revealed target labels as Eq. 2's once there are some. Ends with a checkpoint (before
    a labelling round, the one a run killed in the round resumes from). Returns theta."""
    source, target = streams
    for it in job.iterations(until):
        for k, o in opt.items():
            poly_lr(o, args.lr_d if k.startswith("D") else args.lr, it, args.iters, args.power)
        batch_s, batch_t = next(source), next(target)
        y_t = revealed.batch(batch_t[1].tolist(), job.rt.device) if revealed.pixels else None  # Eq. 2's labels
        losses, theta = train_step(args, net, opt, theta, batch_s, batch_t, y_t, job.scaler, job.rt)
        job.record(it, losses, theta, revealed)  # log lines, checkpoints; a stop signal ends the run here
    job.checkpoint(theta, revealed)
    return theta


@stop_on_signal  # SIGTERM / SIGINT: a checkpoint at the next iteration boundary, then exit 128 + n (tools/runtime.py)
def run(args, rt=None):
    """One run of args.mode: warm up A, train B on it, let the selector choose and the annotator reveal, adapt A
    with the labels, evaluate. Returns the metrics (also written to metrics.json). rt: where it computes (default:
    tools.runtime.setup's from the flags). `job` is what a run needs besides the method: the folder, checkpoints,
    resume, --init-from, stop signals, torchrun, the outputs (tools/job.py)."""
    rt = rt or setup(args)
    job = Job(args, rt, selection.shares_warmup(args.mode, args.schedule))  # (shared: the seed's warmup.pt)

    # ---- 0. set-up ------------------------------------------------------------------------------------------------
    source, target, evals, classes = build_data(args)      # target-train labels: for the annotator, nowhere else
    target_images = data.ImagesOnly(target)                 # all the trainer may see of target train ...
    annotator = selection.Annotator(lambda i, labelled=target: labelled[i][1],  # ... and the door to its labels
                                    args.annotator_noise, args.noise_band, args.seed)
    if args.annotator == "label-studio":   # a person's answers instead, read from Label Studio (tools/label_studio.py)
        annotator = selection.Annotator(job.answer)
    del target                                              # (no other name for the labelled set in this scope)
    net = {k: m.to(rt.device, memory_format=rt.memory_format) for k, m in build_models(args, len(classes)).items()}
    opt = build_optimisers(args, net)
    theta = torch.full((len(classes),), labor.IAST_THETA0, device=rt.device)     # Eq. 5's class-wise thresholds
    revealed = selection.RevealedLabels(target_images[0][0].shape[-2:])          # Eq. 2's target labels: none yet
    net, theta, revealed = job.start(net, opt, annotator, target_images, theta, revealed)  # or a stopped run's
    streams = job.stream(source, 0), job.stream(target_images, 1)
    rounds = select_iterations(args)  # the labelling rounds, as iterations of stage 1

    # ---- 1. adaptation up to each labelling round, 1b. the selector B, 2. the round ---------------------------------
    for r, at in job.rounds_to_buy(rounds):
        theta = adapt(args, net, opt, theta, revealed, streams, at, job)   # before the first round: A's warm-up
        if "B" in net and args.schedule == "staged" and not job.selector_trained:   # (--init-from may bring it)
            with job.timed("selector"):                    # 1b. B learns the warmed-up A's pseudo-labels
                theta = train_selector(args, net, opt, job.scaler, theta, target_images, job.state, rt)
        with job.timed("selection"):                       # 2. the selector chooses, the annotator reveals
            if args.annotator == "oracle":
                found = select_round(args, net, target_images, annotator, revealed, r, len(rounds), classes, rt)
            else:   # a person answers in Label Studio: the run stops between choosing and buying, --resume goes on
                query = job.asked(r) or choose(args, net, target_images, revealed, r, len(rounds), rt)
                if not job.person_answered(r, len(rounds), query, classes, theta, revealed):
                    return None                            # the tasks are in Label Studio, the checkpoint saved
                found = buy_round(args, query, annotator, revealed, classes)
        job.bought(r, len(rounds), found, theta, revealed)
    theta = adapt(args, net, opt, theta, revealed, streams, args.iters, job)   # 1. A with the labels too (Eq. 2)

    # ---- 3. evaluation: the final A (no checkpoint is ever chosen on the evaluation split) -----------------------
    A = job.evaluation_model()
    miou, ious = evaluate(args, A, evals, len(classes), rt)

    # ---- 4. outputs ------------------------------------------------------------------------------------------------
    return job.finish(A, theta, revealed, miou, ious, classes, evals)


def main(argv=None):
    """The command line: one run or the benchmark. A user's mistake ends as one `error:` line and exit code 2, a
    SIGTERM or Ctrl-C as a checkpoint and 128 + the signal (distributed.exit_cleanly)."""
    def work():
        args = get_args(argv)
        rt = setup(args, *init_distributed(args))   # the run's runtime: made here, once
        if args.benchmark:
            bench.benchmark(args, rt, build_models, build_optimisers, train_step)
        else:
            run(args, rt)

    exit_cleanly(work)


if __name__ == "__main__":
    main()
