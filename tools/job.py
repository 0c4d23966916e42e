"""What a run of train.py does besides the method, behind one small object: train.run makes the calls of the
algorithm box and passes the method's state (theta, the labels revealed) in; a Job keeps the run's folder,
checkpoints, exact resume, --init-from, stop signals, torchrun, the log and the outputs. None of this is LabOR.

    job = Job(args, rt, shared)         the run folder (refused if it holds another run); rt: tools.runtime's
    net, theta, revealed = job.start(net, opt, annotator, target_images, theta, revealed)
                                        as given, or restored: a stopped run's checkpoint (with the labels it bought
                                        after it, from selection.pt) or --init-from's warm-up (and B); DDP
    job.stream(dataset, k)              seeded endless batches, from where the run stands
    job.rounds_to_buy(rounds)           the labelling rounds (r, iteration) a resumed run has not bought yet
    job.iterations(until)               the iterations still to run up to `until` (a stop signal ends the run here)
    job.record(it, losses, theta, revealed)   losses, log lines, periodic checkpoints; a stop signal: checkpoint, end
    job.checkpoint(theta, revealed)     checkpoint.pt, everything a resumed run needs
    job.selector_trained                B came trained with --init-from's warm-up: stage 1b is done
    job.timed(stage)                    seconds per stage, for metrics.json
    job.bought(r, n, found, theta, revealed)  the round's records and log line, selection.pt, warmup.pt, checkpoint
    job.asked(r), job.person_answered(...), job.answer(i)   --annotator label-studio: a person answers a round between
                                        choosing and buying; the run stops there and --resume reads the answers
    job.evaluation_model()              A for evaluation (under DDP: rank 0's statistics, the replicas compared)
    job.finish(A, theta, revealed, miou, ious, classes, evals)   model_A.pt, selection.pt, figures, metrics.json
"""
import contextlib
import time
from pathlib import Path

import torch
from tqdm import tqdm

import labor
import selection
from tools import Stopped, UsageError, figures, label_studio
from tools import checkpoint as files
from tools.distributed import on_rank0, ranks_agree, sync_buffers, wrap_distributed
from tools.runtime import autocast, stop_requested, stream, unwrap


class Job:
    """The plumbing of one run (see the module docstring): its folder, `state` (counters and records: what a
    checkpoint saves besides the models and the method's state) and the GradScaler."""

    def __init__(self, args, rt, shared=False):
        self.t_start = time.time()
        # its warm-up is the seed's: it writes warmup.pt (not a run that waits for a person: its checkpoint at the
        # round, which warmup.pt copies, holds B trained)
        self.shared = shared and not args.init_from and args.annotator == "oracle"
        self.args, self.rt, self.out = args, rt, Path(rt.out)
        self.settings = files.args_dict(args, rt)   # as checkpoints and metrics.json save them
        on_rank0(rt, files.prepare_out, self.out, args.resume)
        self.resume = files.resume_checkpoint(args)
        self.state = files.new_state()  # iteration, rounds done, loss history, seconds per stage
        self.person = label_studio.Person(args, rt, self.out) if args.annotator == "label-studio" else None

    def start(self, net, opt, annotator, target_images, theta, revealed):
        """Where the run starts: as given, or a resumed run's checkpoint (and the labels of a round it bought after
        that checkpoint, from selection.pt: never bought twice), or --init-from's warm-up. Returns the models (in
        DDP under torchrun), theta and the labels revealed; the first checkpoint is written before any training."""
        args, rt, state = self.args, self.rt, self.state
        # (the annotator, for its counters in checkpoints and a replayed round: the job never asks it for labels)
        self.net, self.opt, self.annotator, self.target_images = net, opt, annotator, target_images
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
        if self.resume is not None:  # everything an uninterrupted run would hold at this iteration
            theta, revealed = files.restore(self.resume, state, net, opt, self.scaler, annotator)
            saved = self.out / files.SELECTION
            saved = files.load_safe(saved, "selection") if saved.exists() else None
            if saved is not None and saved["rounds_done"] > state["rounds_done"]:  # bought, then killed
                if saved.get("iter") != state["iter"]:  # (the checkpoint before a round is at its iteration)
                    raise UsageError(f"{self.out}: its selection.pt holds a round this checkpoint.pt does not "
                                          f"come before (written by an older version?); delete selection.pt to buy "
                                          f"the round again")
                revealed, theta = files.replay_selection(saved, annotator, state)
            if self.person:  # the answers to the round the run stopped at, read before anything is written
                self.person.read_answers(state["rounds_done"])
        elif args.init_from:
            theta = files.init_from(args, self.settings, state, net, opt, self.scaler, annotator)
        self.net = wrap_distributed(rt, net)
        state["stage_time"]["setup"] += time.time() - self.t_start
        self.saved_at = state["iter"]  # iteration of the checkpoint on disk, for the divergence messages
        self.bar = tqdm(total=args.iters, initial=state["iter"], desc=f"{args.mode}: adaptation",
                        disable=rt.quiet)
        theta = theta.to(rt.device)
        if self.resume is None:
            self.checkpoint(theta, revealed)  # iteration 0: from now on a killed run can always be resumed
        return self.net, theta, revealed

    @property
    def selector_trained(self):
        """Stage 1b is done: B's log is there (B came trained with --init-from's warm-up, also in a resumed run's
        checkpoint; a run that trains B itself writes its next checkpoint after the round)."""
        return bool(self.state["selector_history"])

    def stream(self, dataset, k):
        """Endless seeded batches of `dataset` (k: 0 source, 1 target) from where the run stands: a resumed run
        draws the batches an uninterrupted one would have drawn."""
        a = self.args
        return stream(dataset, a, self.rt, a.seed * 2 + k, self.state["iter"] * a.batch_size)

    def rounds_to_buy(self, rounds):
        """(r, iteration) of each labelling round that a resumed run has not bought yet."""
        return [(r, at) for r, at in enumerate(rounds) if r >= self.state["rounds_done"]]

    def iterations(self, until):
        """The iteration numbers from where the run stands up to `until`. A stop signal noted before them (during
        set-up, B's training or a round) ends the run here: the checkpoint on disk is at this iteration."""
        if signum := stop_requested(self.rt):
            raise Stopped(signum, self.state["iter"], self.out)
        for it in range(self.state["iter"], until):
            self.t_step = time.time()
            yield it

    def record(self, it, losses, theta, revealed):
        """Iteration `it` is done: its losses (one that is not finite stops the run here), the log line every
        --log-every iterations, the checkpoint every --save-every; after a SIGTERM or Ctrl-C, a checkpoint and
        Stopped (main exits 128 + the signal), so the resumed run ends as the uninterrupted one."""
        args, state = self.args, self.state
        files.record_losses(state, losses, it, self.out, self.saved_at)
        state["iter"] = it + 1
        state["stage_time"]["adaptation"] += time.time() - self.t_step
        self.bar.update()
        if state["iter"] % args.log_every == 0 or state["iter"] == args.iters:
            files.log_interval(args, self.rt, state, self.bar)
        if signum := stop_requested(self.rt):
            self.checkpoint(theta, revealed)
            raise Stopped(signum, state["iter"], self.out)
        if args.save_every and state["iter"] % args.save_every == 0 and state["iter"] < args.iters:
            self.checkpoint(theta, revealed)

    def checkpoint(self, theta, revealed):
        files.check_finite(self.net, self.state, self.out, self.saved_at)
        self.saved_at = self.state["iter"]
        if self.rt.rank == 0:
            files.save_checkpoint(self.settings, self.out, self.state, self.net, self.opt, self.scaler, theta,
                                  revealed, self.annotator)

    @contextlib.contextmanager
    def timed(self, stage):
        """Adds the seconds spent inside to stage_time[stage]."""
        t0 = time.time()
        try:
            yield
        finally:
            self.state["stage_time"][stage] += time.time() - t0

    def bought(self, r, n_rounds, found, theta, revealed):
        """Round r is bought (found: select_round's masks, required, a_wrong): its records and log line, warmup.pt
        after the first round of a run whose warm-up the seed shares (--init-from's source), selection.pt (from now
        on a kill never buys the round again) and a checkpoint."""
        args, state = self.args, self.state
        masks, required, a_wrong = found
        if self.person:  # what a person's answers left out or added, and the seconds they took
            required["label_studio"] = self.person.record(r)
        state["masks"].update(masks)
        state["a_wrong"].update({i: a_wrong[i] | state["a_wrong"].get(i, a_wrong[i]) for i in a_wrong})
        state["selection_rounds"].append(required)
        if "B" in self.net:  # the at-a-glance figure's image, as selection saw it (figures.at_a_glance)
            state["glance"] = glance_record(args, self.rt, self.net, self.target_images)
        files.log_round(args, self.rt, r, n_rounds, required)
        if r == 0 and self.shared and self.rt.rank == 0:  # first: the seed's other runs need it whatever happens next
            files.save_warmup(self.settings, self.out, self.net, theta, state)
        state["rounds_done"] = r + 1
        if self.rt.rank == 0:
            files.save_selection(args.mode, self.out, revealed, self.annotator, state, theta)
        self.checkpoint(theta, revealed)

    # ------------------------------------------------------------- a person answers (--annotator label-studio)

    def answer(self, i):
        """A person's labels of target-train image i, (H, W), 255 where they gave none: the annotator's label_of."""
        return self.person.label_of(i)

    def asked(self, r):
        """The query of round r that was put to a person before the run stopped (None: not asked yet)."""
        return self.person.query(r)

    def person_answered(self, r, n_rounds, query, classes, theta, revealed):
        """True when a person's answers to round r are in (read by start when the run resumed), or there was
        nothing to ask. Otherwise asks: the query and a checkpoint first (a run that cannot reach Label Studio
        resumes from them), then the tasks in Label Studio, label_studio.json and one line saying how to go on.
        False: the run stops here, exactly where an oracle's run buys the labels."""
        if self.person.answered(r, query):
            return True
        if self.person.query(r) is None:
            self.person.save_query(r, query)
            self.checkpoint(theta, revealed)
        line = self.person.push(r, query, classes, self.target_images)
        self.bar.close()
        print(line, flush=True)
        files.unlock_folder(self.out)
        return False

    def evaluation_model(self):
        """A, ready to evaluate. Under DDP every rank takes rank 0's batch-norm statistics (the model saved), and
        metrics.json records whether every rank holds the same weights (DDP averaged every gradient)."""
        self.bar.close()
        self.t_eval = time.time()
        sync_buffers(self.rt, self.net)
        self.agree = ranks_agree(self.rt, self.net)
        return unwrap(self.net["A"])

    def finish(self, A, theta, revealed, miou, ious, classes, evals):
        """Stage 4 (rank 0): model_A.pt, selection.pt, the figures and metrics.json; the folder is free again.
        Returns the metrics (None on the other ranks)."""
        args, state = self.args, self.state
        state["stage_time"]["evaluation"] = time.time() - self.t_eval
        t0 = time.time()
        if self.rt.rank == 0:
            files.save_model(self.settings, self.out, A, theta, classes)  # model_A.pt: A and theta, for the notebooks
            if not state["rounds_done"]:  # a mode that buys nothing still writes its (empty) selection.pt
                files.save_selection(args.mode, self.out, revealed, self.annotator, state, theta)
            figures.save_figures(args, self.rt.device, self.out, A, evals, self.target_images, state["masks"], revealed,
                                 state["a_wrong"])
        state["stage_time"]["outputs"] = time.time() - t0
        metrics = files.write_metrics(args, self.rt, self.out, state, miou, ious, classes, self.annotator,
                                      self.agree) if self.rt.rank == 0 else None
        files.unlock_folder(self.out)
        return metrics


@torch.no_grad()
def glance_record(args, rt, net, target_images, i=figures.GLANCE_IMAGE):
    """Target-train image i as a labelling round saw it, for the at-a-glance figure: A's prediction, the argmax of
    each of B's heads, the inconsistency mask (Eq. 4; SPL labels all of it) and the points PPL would choose there
    (--points, --ppl-cell, --ppl-space), all at image size. Called right after the round, while A and B are the
    models that chose; no label is read. Returns {"index", "pred_a", "head1", "head2", "mask", "ppl"}."""
    A, B = unwrap(net["A"]).eval(), unwrap(net["B"]).eval()
    x = target_images[i][0][None].to(rt.device)                                          # (1, 3, H, W)
    with autocast(rt):
        logits_a = A(x)[0]
        logits1, logits2, feat = B(x)
    size = x.shape[-2:]
    p1, p2 = (labor.upsample(t.float(), size) for t in (logits1, logits2))              # (1, C, H, W) each
    points = selection.ppl_select(p1, p2, args.points, feat=feat if args.ppl_space == "feat" else None,
                                  cell=args.ppl_cell)                                     # (1, H, W) bool
    A.train()
    B.train()
    as_map = lambda t: t.argmax(dim=1)[0].to(torch.uint8).cpu()  # noqa: E731  (H, W) class indices
    return {"index": i, "pred_a": as_map(labor.upsample(logits_a.float(), size)), "head1": as_map(p1),
            "head2": as_map(p2), "mask": selection.inconsistency_mask(p1, p2)[0].cpu(), "ppl": points[0].cpu()}
