"""The plumbing around the method: none of this is LabOR. train.py imports the run API (flags, runtime, job,
checkpoint, distributed, bench); the rest runs many runs and reports them (experiments, tables, figures).

    flags        train.py's command line: every flag, its valid values, the preset's defaults
    runtime      device, precision, ranks (one small object), the seeded data stream
    job          what a run does around the method: its folder, checkpoints, resume, stop signals, outputs
    checkpoint   the files a run writes and reads: atomic saves, safe loads, resume, --init-from, metrics.json
    distributed  torchrun: DDP, gathering the selections, keeping the replicas equal
    bench        --benchmark (the speed of one step) and python -m tools.bench --check (a machine before a paper run)
    experiments  tables, sweeps and noise curves of many runs: python -m tools.experiments table
    tables       their tables and statistics; figures: every figure
    export_synthetic   the synthetic benchmark written as image folders (--data folder's layout)
"""


class UsageError(Exception):
    """A mistake the user can fix (bad flag, folder, file): printed as one message, exit code 2."""


class Stopped(Exception):
    """A run stopped by SIGTERM / SIGINT after writing its checkpoint; main exits with 128 + the signal."""

    def __init__(self, signum, iteration, out, message=None):
        self.signum, self.iteration, self.out, self.message = signum, iteration, out, message
        super().__init__(message or f"stopped at iteration {iteration}; continue with: python train.py --resume {out}")
