"""The course exercises (notebooks/06_exercises.ipynb, checks in notebooks/exercise_checks.py): every check passes
with the project's own functions, catches typical wrong answers, and the committed notebook holds empty stubs whose
check cells pass once the stubs are filled with the reference."""
import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
import exercise_checks as ex  # noqa: E402
import labor  # noqa: E402
import models  # noqa: E402
import selection  # noqa: E402
import train  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "06_exercises.ipynb"
# the notebook's stubs and the project's functions that answer them
ANSWERS = {"seg_loss": labor.seg_loss, "adv_generator_loss": labor.adv_generator_loss,
           "adv_discriminator_loss": labor.adv_discriminator_loss, "inconsistency_mask": selection.inconsistency_mask,
           "iast_update": labor.iast_update, "pseudo_labels": labor.pseudo_labels,
           "pseudo_label_loss": labor.pseudo_label_loss, "discrepancy": labor.discrepancy,
           "spl_select": selection.spl_select, "budget_to_pixels": selection.budget_to_pixels,
           "ppl_select": selection.ppl_select, "allocate_points": selection.allocate_points,
           "random_select": selection.random_select, "entropy_select": selection.entropy_select,
           "annotate": selection.Annotator.annotate, "batch": selection.RevealedLabels.batch,
           "aspp_forward": models.ASPP.forward, "pixel_selector_forward": models.PixelSelector.forward,
           "discriminator_layers": lambda c, ndf=64: models.FCDiscriminator(c, ndf).net,
           "selector_step": train.selector_step}


def quiet(fn, *a):
    out = io.StringIO()
    with redirect_stdout(out):
        ok = fn(*a)
    return ok, out.getvalue()


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_every_check_passes_with_the_reference(name):
    check, reference = ex.EXERCISES[name]
    ok, printed = quiet(check, *reference)
    assert ok, printed


def _argmax_without_dim(l1, l2):
    return l1.argmax() != l2.argmax()


def _discrepancy_summed_over_classes(l1, l2):
    return (F.softmax(l1, dim=1) - F.softmax(l2, dim=1)).abs().sum(dim=1).mean()


def _seg_loss_as_mean_over_all_pixels(logits, labels, ignore_index=255):
    up = labor.upsample(logits, labels.shape[-2:])
    loss = F.cross_entropy(up, labels.clamp(max=up.shape[1] - 1), reduction="none")
    return (loss * (labels != ignore_index)).mean()  # divides by every pixel, not the labelled ones


def _generator_flipped(d, gan="vanilla"):
    return labor._gan_criterion(d, labor.TARGET_LABEL, gan)  # A rewarded for looking like target


def _aspp_two_branches(self, x):
    return self.branches[0](x) + self.branches[1](x)  # AdaptSegNet's slip


def _selector_not_detached(self, x, heads_on_detached=False):
    _, feat = self.backbone(x)
    l1, l2 = self.heads(feat)
    return (l1, l2, feat) if not heads_on_detached else (l1, l2, feat, l1, l2)


def _selector_step_wrong_sign(args, B, opt_b, theta, x_t, logits_a, scaler):
    flipped = type(args)(**{**vars(args), "lambda_dis": -args.lambda_dis})
    return train.selector_step(flipped, B, opt_b, theta, x_t, logits_a, scaler)


def _annotate_everything(self, indices, sel):
    return selection.Annotator.annotate(self, indices, torch.ones_like(sel))


def _layers_with_sigmoid(c, ndf=64):
    return torch.nn.Sequential(*models.FCDiscriminator(c, ndf).net, torch.nn.Sigmoid())


WRONG = {  # exercise -> (what is wrong, the wrong answer(s))
    "inconsistency_mask": ("argmax without dim", (_argmax_without_dim,)),
    "discrepancy": ("summed over classes instead of the mean", (_discrepancy_summed_over_classes,)),
    "seg_loss": ("the mean over all pixels, labelled or not", (_seg_loss_as_mean_over_all_pixels,)),
    "adv_losses": ("A's loss with the target label (a flipped sign)", (_generator_flipped,
                                                                       labor.adv_discriminator_loss)),
    "aspp": ("two of the four branches", (_aspp_two_branches,)),
    "pixel_selector": ("heads not detached for Eq. 6", (_selector_not_detached,)),
    "selector_step": ("Eq. 6 with the wrong sign", (_selector_step_wrong_sign,)),
    "annotator": ("every pixel revealed", (_annotate_everything, selection.RevealedLabels.batch)),
    "discriminator": ("a sigmoid at the end", (_layers_with_sigmoid,)),
    "spl": ("the pixels already bought chosen again (exclude ignored)",
            (lambda l1, l2, budget=None, exclude=None, cap="random", seeds=None: selection.spl_select(
                l1, l2, budget, None, cap, seeds), selection.budget_to_pixels)),
    "ppl": ("random mask pixels instead of the ones nearest the prototypes",
            (lambda l1, l2, n=40, feat=None, exclude=None, cell=0: selection.spl_select(
                l1, l2, budget=n / l1[0, 0].numel(), exclude=exclude, seeds=[0] * len(l1)),
             selection.allocate_points)),
    "iast": ("the thresholds never updated", (lambda prob, theta, *a, **k: theta.clone(), labor.pseudo_labels,
                                              labor.pseudo_label_loss)),
    "baselines": ("A's most confident pixels instead of its most uncertain",
                  (selection.random_select, lambda logits, n, exclude=None: selection._top_per_image(
                      F.softmax(logits, dim=1).max(dim=1).values, n, None if exclude is None else ~exclude))),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_a_wrong_answer_is_caught_and_shown(name):
    """Each wrong answer fails its check, which prints which case differs and how (not only 'wrong')."""
    what, answer = WRONG[name]
    ok, printed = quiet(ex.check, name, *answer)
    assert not ok, (what, printed)
    assert "[" in printed and ("differ" in printed or "raised" in printed or "got" in printed or "shape" in printed), \
        printed


def test_every_exercise_has_a_wrong_answer_test():
    assert set(WRONG) == set(ex.EXERCISES)


def _cells(kind):
    return ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == kind]


def test_the_notebooks_stubs_are_empty_and_pass_once_filled_with_the_reference():
    """The committed notebook: every stub raises NotImplementedError (a student starts from nothing), its saved
    check outputs say so, and with each stub bound to the project's function every check cell passes."""
    code = _cells("code")
    stubs = {}
    for src in code[1:]:
        if src.lstrip().startswith(("def ", "import runs")):
            exec(src, {"labor": labor, "IGNORE_INDEX": 255, "torch": torch, "nn": torch.nn}, stubs)
    names = {k for k, v in stubs.items() if callable(v) and k in ANSWERS}
    assert names == set(ANSWERS)
    for name in names:
        with pytest.raises(NotImplementedError):
            stubs[name](*([None] * stubs[name].__code__.co_argcount))
    saved = ["".join(o.get("text", "")) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"
             for o in c.get("outputs", [])]
    assert sum("not implemented yet" in t for t in saved) == len(ex.EXERCISES)   # committed executed, stubs empty
    results = []
    checker = type("Checks", (), {"check": staticmethod(lambda n, *f: results.append(quiet(ex.check, n, *f)[0]))})
    for src in code:
        if src.startswith("ex.check("):
            exec(src, {"ex": checker, **ANSWERS})
    assert results == [True] * len(ex.EXERCISES)
