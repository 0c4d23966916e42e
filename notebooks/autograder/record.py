"""Record the project's outputs on the exercises' inputs: notebooks/exercise_expected_public.pt (seed 0, shipped
to students) and notebooks/autograder/exercise_expected_hidden.pt (the autograder's seed, kept in that file).

    python notebooks/autograder/record.py                    # both files, the hidden one with its own seed
    python notebooks/autograder/record.py --new-hidden-seed  # a new hidden draw (a course's own, say)

Needs the project (labor.py, selection.py, models.py, train.py): it runs their functions, the answers. Each file
holds {"seed": int, "cases": {"exercise/case": (output, extra)}}; extra is what a comparison needs besides the
output (for PPL: the mask, the class of each pixel, whether distances tie at a cut, the excluded pixels), computed
here so that exercise_checks.py holds no part of an answer. Not in the autograder zip."""
import argparse
import secrets
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PUBLIC = HERE.parent / "exercise_expected_public.pt"
HIDDEN = HERE / "exercise_expected_hidden.pt"


def checks():
    import runpy
    return argparse.Namespace(**runpy.run_path(str(HERE.parent / "exercise_checks.py")))


def reference():
    """The project's functions for each exercise."""
    sys.path.insert(0, str(ROOT))
    import labor
    import models
    import selection
    import train
    return argparse.Namespace(labor=labor, selection=selection, models=models, train=train, answers={
        "seg_loss": (labor.seg_loss,),
        "adv_losses": (labor.adv_generator_loss, labor.adv_discriminator_loss),
        "inconsistency_mask": (selection.inconsistency_mask,),
        "iast": (labor.iast_update, labor.pseudo_labels, labor.pseudo_label_loss),
        "discrepancy": (labor.discrepancy,),
        "spl": (selection.spl_select, selection.budget_to_pixels),
        "ppl": (selection.ppl_select, selection.allocate_points),
        "baselines": (selection.random_select, selection.entropy_select),
        "annotator": (selection.Annotator.annotate, selection.RevealedLabels.batch),
        "aspp": (models.ASPP.forward,),
        "pixel_selector": (models.PixelSelector.forward,),
        "discriminator": (lambda c, ndf=64: models.FCDiscriminator(c, ndf).net,),
        "selector_step": (lambda *a: train.selector_step(*a), models.PixelSelector.forward),
    })


def _ppl_extra(project, l1, l2, n, exclude):
    """The inconsistency mask, the class of each pixel under pbar, whether a tie at some class's cut leaves the
    choice of points open (then only counts, mask and classes are compared), and the excluded pixels."""
    sel = project.selection
    mask = sel.inconsistency_mask(l1, l2)
    free = mask if exclude is None else mask & ~exclude
    pbar = 0.5 * (F.softmax(l1, dim=1) + F.softmax(l2, dim=1))
    cls = pbar.argmax(dim=1)
    c = l1.shape[1]
    tied = False
    for j in range(len(l1)):
        counts = torch.bincount(cls[j][free[j]], minlength=c)
        for k, a in enumerate(sel.allocate_points(counts, n).tolist()):
            if 0 < a < int(counts[k]):
                z = pbar[j].flatten(1)[:, (free[j] & (cls[j] == k)).flatten()].t()
                d = (z - z.mean(0, keepdim=True)).norm(dim=1).sort().values
                tied |= bool(d[a - 1] == d[a])
    return mask, cls, tied, exclude


EXTRAS = {"ppl": _ppl_extra}


def _detached(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, (list, tuple)):
        return type(x)(_detached(v) for v in x)
    if isinstance(x, dict):
        return {k: _detached(v) for k, v in x.items()}
    return x


def record(seed, project=None, ex=None):
    """{"seed": seed, "cases": {name/case: (the reference's output, extra)}} for every case of every exercise."""
    project, ex = project or reference(), ex or checks()
    out = {}
    for name, cases in ex.EXERCISES.items():
        for case in cases(seed):
            want = case.run(*project.answers[name])
            extra = EXTRAS[case.extra[0]](project, *case.extra[1]) if case.extra else None
            out[f"{name}/{case.what}"] = (_detached(want), _detached(extra))
    return {"seed": seed, "cases": out}


def main(argv=None):
    p = argparse.ArgumentParser(description="Record the project's outputs on the exercises' inputs.")
    p.add_argument("--new-hidden-seed", action="store_true",
                   help="draw a new seed for the hidden checks (else keep the one in exercise_expected_hidden.pt)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.new_hidden_seed or not HIDDEN.exists():
        hidden_seed = 1 + secrets.randbelow(2 ** 31)
    else:
        hidden_seed = int(torch.load(HIDDEN, weights_only=True)["seed"])
    project = reference()
    for path, seed in ((PUBLIC, 0), (HIDDEN, hidden_seed)):
        torch.save(record(seed, project), path)
        print(f"wrote {path} (seed {seed if path == PUBLIC else 'kept in the file'})")


if __name__ == "__main__":
    main()
