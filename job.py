"""What a run of train.py needs beside the method, behind one small interface: train.run makes the calls of the
algorithm box, a Job does the rest (checkpoints, exact resume, the seed's shared warm-up and selector, stop
signals, torchrun, the outputs). None of this is LabOR.

    job = Job(args)                      the device, the run folder, the checkpoint of a resumed run
    net = job.start(net, opt, annotator, target_images, shares_warmup)
                                         theta (IAST), the labels bought so far, the GradScaler; restored from a
                                         resumed run or the seed's shared warm-up of A; DDP under torchrun
    job.stream(dataset, k)               seeded endless batches, from where the run stands
    for it in job.iterations():          stop signals (checkpoint, then Stopped), sharing A's warm-up, progress bar
    job.round_due(r)                     False when round r is done, or was bought before a kill (then replayed)
    job.selector(B, train)               the seed's shared B, or train() and share it
    job.timed(stage)                     seconds per stage, for metrics.json
    job.bought(r, n, masks, required, a_wrong)   the round's records, selection.pt, a checkpoint
    job.record(it, losses)               the iteration's losses, log lines, periodic checkpoints
    job.evaluation_model()               A for evaluation (under DDP: rank 0's statistics, the replicas compared)
    job.finish(A, miou, ious, classes, evals)    checkpoint, model_A.pt, figures, metrics.json (rank 0)
"""
import contextlib
import time
from pathlib import Path

import torch
from tqdm import tqdm

import figures
import labor
import runs
import selection
from distributed import on_rank0, ranks_agree, sync_buffers, wrap_distributed


class Job:
    """The plumbing of one run (see the module docstring). Holds the trainer's state that a checkpoint saves:
    `theta` (IAST thresholds), `revealed` (labels bought), `scaler`, and `state` (counters and records)."""

    def __init__(self, args):
        self.t_start = time.time()
        runs.setup_runtime(args)
        self.args, self.out = args, Path(args.out)
        on_rank0(args, runs.prepare_out, self.out, args.resume)
        self.resume = runs.resume_checkpoint(args)
        self.state = runs.new_state()  # iteration, rounds done, loss history, seconds per stage
        self.saved_selection = self.warmup_file = None

    def start(self, net, opt, annotator, target_images, shares_warmup=False):
        """Everything a run holds besides the models, fresh or restored: a resumed run's checkpoint (and its
        selection.pt), or the seed's shared warm-up when `shares_warmup` and another run saved it first. Returns
        the models, wrapped in DDP under torchrun; the first checkpoint is written before any training."""
        args = self.args
        self.net, self.opt, self.annotator, self.target_images = net, opt, annotator, target_images
        self.scaler = torch.amp.GradScaler(args.device.type, enabled=args.amp_dtype == torch.float16)
        self.theta = torch.full((target_images.num_classes,), labor.IAST_THETA0, device=args.device)  # Eq. 5
        self.revealed = selection.RevealedLabels(tuple(target_images[0][0].shape[-2:]))
        if shares_warmup:
            self.warmup_file = runs.shared_file(args, "warmup", runs.WARMUP_KEYS)
        if self.resume is not None or (self.warmup_file is not None and self.warmup_file.exists()):
            self.theta, self.revealed, self.saved_selection = runs.start_from(
                self.resume, self.warmup_file, self.out, self.state, net, opt, self.scaler, annotator)
        self.theta = self.theta.to(args.device)
        self.net = wrap_distributed(args, net)
        self.state["stage_time"]["setup"] += time.time() - self.t_start
        self.saved_at = self.state["iter"]  # iteration of the checkpoint on disk, for the divergence messages
        if self.resume is None:
            self.checkpoint()  # iteration 0: from now on a killed run can always be resumed
        return self.net

    def stream(self, dataset, k):
        """Endless seeded batches of `dataset` (k: 0 source, 1 target) from where the run stands: a resumed run
        draws the batches an uninterrupted one would have drawn."""
        a = self.args
        return runs.stream(dataset, a, a.seed * 2 + k, self.state["iter"] * a.batch_size, a.device)

    def checkpoint(self):
        runs.check_finite(self.net, self.state, self.out, self.saved_at)
        self.saved_at = self.state["iter"]
        runs.save_checkpoint(self.args, self.out, self.state, self.net, self.opt, self.scaler, self.theta,
                             self.revealed, self.annotator)

    def iterations(self):
        """The iteration numbers of stage 1 still to run. Before each: a stop signal (SIGTERM, Ctrl-C) ends the run
        here with a checkpoint, so a resumed run ends the same; at the end of the staged warm-up, A's warm-up is
        shared for the other runs of this seed (--shared-dir)."""
        args, state = self.args, self.state
        warmup_it = runs.as_iterations(args.warmup, args.iters)
        self.bar = tqdm(range(state["iter"], args.iters), desc=f"{args.mode}: adaptation", initial=state["iter"],
                        total=args.iters, disable=args.rank != 0 or args.quiet)
        for it in self.bar:
            if signum := runs.stop_requested(args):
                self.checkpoint()
                raise runs.Stopped(signum, it, self.out)
            if self.warmup_file is not None and it == warmup_it and not self.warmup_file.exists():
                self.checkpoint()
                if args.rank == 0:  # (rank 0 alone writes checkpoints)
                    runs.share(self.out / runs.CHECKPOINT, self.warmup_file)
            self.t_step = time.time()
            yield it

    @contextlib.contextmanager
    def timed(self, stage):
        """Adds the seconds spent inside to stage_time[stage] (a round's seconds are not the adaptation's: the
        adaptation's clock restarts when the round is done)."""
        t0 = time.time()
        try:
            yield
        finally:
            self.state["stage_time"][stage] += time.time() - t0

    def round_due(self, r):
        """True when labelling round r is to be bought now. A resumed run that had bought it before it was killed
        takes those labels back from selection.pt instead (never bought twice) and gets False."""
        if self.state["rounds_done"] != r:
            return False
        if self.saved_selection is not None and self.saved_selection["rounds_done"] > r:
            self.revealed = runs.replay_selection(self.saved_selection, self.annotator, self.state)
            self._round_done(r)
            return False
        return True

    def selector(self, B, train):
        """Stage 1b's B and theta: read back when a run of this seed with the same settings trained it already
        (--shared-dir), else train() after a checkpoint (a run killed while B trains starts B again)."""
        with self.timed("selector"):
            self.checkpoint()
            return runs.shared_selector(self.args, B, self.state, train)

    def bought(self, r, n_rounds, masks, required, a_wrong):
        """Records what round r bought (select_round's results), logs it, saves selection.pt and a checkpoint."""
        state = self.state
        state["masks"].update(masks)
        state["a_wrong"].update({i: a_wrong[i] | state["a_wrong"].get(i, a_wrong[i]) for i in a_wrong})
        state["selection_rounds"].append(required)
        if "B" in self.net:  # the at-a-glance figure's image, as selection saw it (figures.at_a_glance)
            state["glance"] = figures.glance_record(self.args, self.net, self.target_images)
        runs.log_round(self.args, r, n_rounds, required)
        self._round_done(r)

    def _round_done(self, r):
        self.state["rounds_done"] = r + 1
        runs.save_selection(self.args, self.out, self.revealed, self.annotator, self.state)
        self.checkpoint()
        self.t_step = time.time()

    def record(self, it, losses):
        """Iteration `it` is done: its losses (a loss that is not finite stops the run here), the log line every
        --log-every iterations, the checkpoint every --save-every."""
        args, state = self.args, self.state
        runs.record_losses(state, losses, it, self.out, self.saved_at)
        state["iter"] = it + 1
        state["stage_time"]["adaptation"] += time.time() - self.t_step
        if state["iter"] % args.log_every == 0 or state["iter"] == args.iters:
            runs.log_interval(args, state, self.bar)
        if args.save_every and state["iter"] % args.save_every == 0 and state["iter"] < args.iters:
            self.checkpoint()

    def evaluation_model(self):
        """A, ready to evaluate. Under DDP every rank takes rank 0's batch-norm statistics (the model saved), and
        metrics.json records whether every rank holds the same weights (DDP averaged every gradient)."""
        self.t_eval = time.time()
        sync_buffers(self.args, self.net)
        self.agree = ranks_agree(self.args, self.net)
        return runs.unwrap(self.net["A"])

    def finish(self, A, miou, ious, classes, evals):
        """Stage 4: the last checkpoint, then (rank 0) model_A.pt, selection.pt, the figures and metrics.json.
        Returns the metrics (None on the other ranks)."""
        args, state = self.args, self.state
        state["stage_time"]["evaluation"] = time.time() - self.t_eval
        t0 = time.time()
        self.checkpoint()
        if args.rank != 0:
            return None
        runs.save_model(args, self.out, A, self.theta, classes)  # model_A.pt: A and theta, for the notebooks
        if not state["rounds_done"]:  # a mode that buys nothing still writes its (empty) selection.pt
            runs.save_selection(args, self.out, self.revealed, self.annotator, state)
        figures.save_figures(args, self.out, A, evals, self.target_images, state["masks"], self.revealed,
                             state["a_wrong"])
        state["stage_time"]["outputs"] = time.time() - t0
        return runs.write_metrics(args, self.out, state, miou, ious, classes, self.annotator, self.agree)
