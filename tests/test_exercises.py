"""The course exercises: notebooks/06_exercises.ipynb (otter-grader's source notebook: stubs, solutions, public and
hidden checks with points, model answers), notebooks/exercise_checks.py (the checks, which compare with outputs
recorded from the project) and notebooks/grade_exercises.py (grading).

Fast: the recorded outputs are the project's; every check passes with the project's functions and with the
notebook's solutions; each wrong answer, including the subtle ones, fails its exercise with a message that says
what differs; each correct alternative passes; the checks run with no project module in reach. Slow (needs
requirements-course.txt): otter makes the student copy and the autograder, and the grader gives the solutions
full marks, the stubs zero, and each set of wrong answers exactly the points of the exercises it breaks."""
import io
import json
import shutil
import subprocess
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
import selection  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "06_exercises.ipynb"
PROJECT = ex.reference()


def quiet(fn, *a, **k):
    out = io.StringIO()
    with redirect_stdout(out):
        ok = fn(*a, **k)
    return ok, out.getvalue()


@pytest.mark.parametrize("hidden", [False, True], ids=["public", "hidden"])
def test_the_recorded_outputs_are_the_projects(hidden):
    """exercise_expected_*.pt hold what the project's functions give today (a change to labor.py, selection.py,
    models.py or train.py that moves an output must be followed by `python notebooks/exercise_checks.py
    --record`), and the hidden draw differs from the public one."""
    recorded, now = ex._expected(hidden), ex.record(hidden, PROJECT)
    assert recorded.keys() == now.keys()
    stale = [k for k in now if ex.describe(list(recorded[k]), list(now[k]))]
    assert not stale, f"re-record: python notebooks/exercise_checks.py --record ({stale[:3]})"
    if hidden:
        public = ex._expected(False)
        assert ex.describe(now["seg_loss/labels at the logits' size"][0],
                           public["seg_loss/labels at the logits' size"][0])


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_every_check_passes_with_the_reference(name):
    for hidden in (False, True):
        ok, printed = quiet(ex.check, name, *PROJECT.answers[name], hidden=hidden)
        assert ok, printed


# ---------------------------------------------------------------------------------------------- wrong answers

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
    return PROJECT.train.selector_step(flipped, B, opt_b, theta, x_t, logits_a, scaler)


def _annotate_everything(self, indices, sel):
    return selection.Annotator.annotate(self, indices, torch.ones_like(sel))


def _layers_with_sigmoid(c, ndf=64):
    return torch.nn.Sequential(*PROJECT.models.FCDiscriminator(c, ndf).net, torch.nn.Sigmoid())


def _iast(percentile=None, cap=True):
    """labor.iast_update with another percentile rule, or without the 0.999 cap."""
    def update(prob, theta, alpha=labor.IAST_ALPHA, beta=labor.IAST_BETA, gamma=labor.IAST_GAMMA):
        conf, pred = prob.max(dim=1)
        new = theta.clone()
        for c in range(len(theta)):
            conf_c = torch.cat([conf[pred == c], theta[c:c + 1]])
            q = float(1.0 - alpha * theta[c] ** gamma)
            if percentile == "nearest rank":
                psi = conf_c.sort().values[max(0, int(torch.tensor(q * len(conf_c)).ceil()) - 1)]
            else:
                psi = torch.quantile(conf_c, q)
            new[c] = beta * theta[c] + (1 - beta) * psi
            if cap:
                new[c] = new[c].clamp(max=0.999)
        return new
    return update


def _pseudo_labels_any_class(prob, theta, ignore_index=255):
    """'a class whose probability reaches its threshold' (the first such class), not the argmax's."""
    reach = prob >= theta[None, :, None, None]                                  # (B, C, H, W)
    first = reach.float().argmax(dim=1)
    return torch.where(reach.any(dim=1), first, torch.full_like(first, ignore_index))


def _budget(rounding):
    return lambda b, h, w: (max(1, int(rounding(b * h * w))) if b > 0 else 0)


def _allocate(order):
    """allocate_points with the leftovers given by another order: 'index' (lowest first) or 'smallest'."""
    def allocate(counts, n):
        alloc = torch.zeros_like(counts)
        remaining = int(min(n, int(counts.sum())))
        while remaining > 0:
            room = counts - alloc
            open_classes = (room > 0).nonzero().flatten()
            share = max(1, remaining // len(open_classes))
            order_ = open_classes if order == "index" else open_classes[room[open_classes].argsort(stable=True)]
            for k in order_:
                give = min(share, int(room[k]), remaining)
                alloc[k] += give
                remaining -= give
                if remaining == 0:
                    break
        return alloc
    return allocate


def _ppl_random_mask_pixels(l1, l2, n=40, exclude=None):
    return selection.spl_select(l1, l2, budget=n / l1[0, 0].numel(), exclude=exclude, seeds=[0] * len(l1))


def _ppl_farthest(l1, l2, n=40, exclude=None):
    """The pixels farthest from the prototype: the same count per image and class, inside the mask."""
    mask = selection.inconsistency_mask(l1, l2)
    pbar = 0.5 * (F.softmax(l1, dim=1) + F.softmax(l2, dim=1))
    out = torch.zeros_like(mask)
    for j in range(len(l1)):
        cls = torch.where(mask[j], pbar[j].argmax(0), -1)
        alloc = selection.allocate_points(torch.bincount(cls[cls >= 0], minlength=l1.shape[1]), n)
        for k in alloc.nonzero().flatten().tolist():
            idx = (cls.flatten() == k).nonzero().flatten()
            z = pbar[j].flatten(1)[:, idx].t()
            far = (z - z.mean(0)).norm(dim=1).argsort(descending=True)[:int(alloc[k])]
            out[j].view(-1)[idx[far]] = True
    return out


def _ppl_outside_the_mask(l1, l2, n=40, exclude=None):
    """The project's points, each moved one pixel right: off the mask, often."""
    return torch.roll(selection.ppl_select(l1, l2, n, exclude=exclude), 1, dims=-1)


# exercise -> [(what is wrong, its functions, a word the message must contain)]
WRONG = {
    "seg_loss": [("the mean over all pixels, labelled or not", (_seg_loss_as_mean_over_all_pixels,), "differ")],
    "adv_losses": [("A's loss with the target label (a flipped sign)",
                    (_generator_flipped, labor.adv_discriminator_loss), "differ")],
    "inconsistency_mask": [("argmax without dim", (_argmax_without_dim,), "shape")],
    "iast": [("the thresholds never updated",
              (lambda prob, theta, *a, **k: theta.clone(), labor.pseudo_labels, labor.pseudo_label_loss), "differ"),
             ("no min(..., 0.999) cap", (_iast(cap=False), labor.pseudo_labels, labor.pseudo_label_loss), "0.999"),
             ("nearest-rank percentile", (_iast("nearest rank"), labor.pseudo_labels, labor.pseudo_label_loss),
              "6 pixels"),
             ("any class reaching its threshold, not the argmax's",
              (labor.iast_update, _pseudo_labels_any_class, labor.pseudo_label_loss), "below 0.5")],
    "discrepancy": [("summed over classes instead of the mean", (_discrepancy_summed_over_classes,), "1/(NC)")],
    "spl": [("the pixels already bought chosen again (exclude ignored)",
             (lambda l1, l2, budget=None, exclude=None, cap="random", seeds=None: selection.spl_select(
                 l1, l2, budget, None, cap, seeds), selection.budget_to_pixels), "excluded"),
            ("the budget rounded down", (selection.spl_select, _budget(lambda x: x // 1)), "0.013"),
            ("the budget rounded up", (selection.spl_select, _budget(lambda x: -(-x // 1))), "0.018")],
    "ppl": [("random mask pixels instead of the ones nearest the prototypes",
             (_ppl_random_mask_pixels, selection.allocate_points), "points per class"),
            ("the farthest pixels from the prototype", (_ppl_farthest, selection.allocate_points),
             "the first point that differs"),
            ("points moved off the mask", (_ppl_outside_the_mask, selection.allocate_points),
             "outside the inconsistency mask"),
            ("leftover points to the lowest class index", (selection.ppl_select, _allocate("index")),
             "allocate_points([4, 9, 6], 5)"),
            ("leftover points to the smallest class", (selection.ppl_select, _allocate("smallest")),
             "allocate_points([4, 9, 6], 5)")],
    "baselines": [("A's most confident pixels instead of its most uncertain",
                   (selection.random_select, lambda logits, n, exclude=None: selection._top_per_image(
                       F.softmax(logits, dim=1).max(dim=1).values, n, None if exclude is None else ~exclude)),
                   "entropy_select")],
    "annotator": [("every pixel revealed", (_annotate_everything, selection.RevealedLabels.batch), "annotate")],
    "aspp": [("two of the four branches", (_aspp_two_branches,), "differ")],
    "pixel_selector": [("heads not detached for Eq. 6", (_selector_not_detached,), "no gradient")],
    "discriminator": [("a sigmoid at the end", (_layers_with_sigmoid,), "differ")],
    "selector_step": [("Eq. 6 with the wrong sign", (_selector_step_wrong_sign, PROJECT.models.PixelSelector.forward),
                       "apart")],
}


@pytest.mark.parametrize("name,what,answer,word", [(n, w, a, word) for n, cases in WRONG.items()
                                                   for w, a, word in cases], ids=lambda v: v if isinstance(v, str)
                         and len(v) < 60 else None)
def test_a_wrong_answer_is_caught_and_shown(name, what, answer, word):
    """Each wrong answer fails its check (public and hidden draws), which names the case that shows it."""
    for hidden in (False, True):
        ok, printed = quiet(ex.check, name, *answer, hidden=hidden)
        assert not ok, (what, printed)
        assert word in printed, (what, printed)


def test_every_exercise_has_a_wrong_answer_test():
    assert set(WRONG) == set(ex.EXERCISES)


def test_the_discrepancy_off_by_c_and_seg_loss_upsampled_otherwise_say_so():
    _, printed = quiet(ex.check, "discrepancy", _discrepancy_summed_over_classes)
    assert "5 x the expected" in printed
    _, printed = quiet(ex.check, "discrepancy", lambda a, b: 2 * _discrepancy_summed_over_classes(a, b))
    assert "x the expected" not in printed
    _, printed = quiet(ex.check, "seg_loss", _seg_loss_as_mean_over_all_pixels)
    assert "align_corners" not in printed

    def corners(logits, labels, ignore_index=255):
        up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=True)
        return labor.seg_loss(up, labels, ignore_index)

    ok, printed = quiet(ex.check, "seg_loss", corners)
    assert not ok and "align_corners=False" in printed, printed


# ---------------------------------------------------------------------------------------------- correct alternatives

def _ppl_with_tie_rule(rule):
    """The project's PPL with another rule for equal distances: torch.topk's order, or the last pixels first."""
    def select(l1, l2, n=40, exclude=None):
        mask = selection.inconsistency_mask(l1, l2)
        pbar = 0.5 * (F.softmax(l1, dim=1) + F.softmax(l2, dim=1))
        out = torch.zeros_like(mask)
        for j in range(len(l1)):
            cls = torch.where(mask[j], pbar[j].argmax(0), -1).flatten()
            alloc = selection.allocate_points(torch.bincount(cls[cls >= 0], minlength=l1.shape[1]), n)
            for k in alloc.nonzero().flatten().tolist():
                idx = (cls == k).nonzero().flatten()
                z = pbar[j].flatten(1)[:, idx].t()
                d = (z - z.mean(0)).norm(dim=1)
                a = int(alloc[k])
                near = d.topk(a, largest=False).indices if rule == "topk" else \
                    (len(d) - 1 - d.flip(0).argsort(stable=True)[:a])          # equal distances: the last first
                out[j].view(-1)[idx[near]] = True
        return out
    return select


@pytest.mark.parametrize("rule", ["topk", "last first"])
def test_ppl_accepts_any_rule_for_equal_distances(rule):
    ok, printed = quiet(ex.check, "ppl", _ppl_with_tie_rule(rule), selection.allocate_points)
    assert ok, printed
    tied = ex._expected(False)["ppl/one class in the mask, all at the same distance (any 3 of them)"]
    assert tied[1][2], "the tied case no longer ties: it tests nothing"


def test_entropy_accepts_any_rule_for_equal_entropies():
    def last_first(logits, n, exclude=None):
        flipped = torch.flip(logits, dims=[-1])
        return torch.flip(selection.entropy_select(flipped, n, None if exclude is None else exclude.flip(-1)),
                          dims=[-1])
    ok, printed = quiet(ex.check, "baselines", selection.random_select, last_first)
    assert ok, printed


def test_selector_step_names_the_earlier_exercise_it_uses_that_fails():
    """A wrong discrepancy breaks exercise 13 too; its report says to fix exercise 5 first."""
    scope = {"seg_loss": labor.seg_loss, "iast_update": labor.iast_update, "pseudo_labels": labor.pseudo_labels,
             "pseudo_label_loss": labor.pseudo_label_loss, "discrepancy": _discrepancy_summed_over_classes,
             "F": F, "torch": torch, "autocast": ex.autocast, "IGNORE_INDEX": 255}
    source = "".join(c for c in _solution_cells() if c.startswith("def selector_step"))
    exec(source, scope)
    ok, printed = quiet(ex.check, "selector_step", scope["selector_step"], PROJECT.models.PixelSelector.forward)
    assert not ok and "your discrepancy" in printed, printed


# ---------------------------------------------------------------------------------------------- the notebook

def _cells():
    return json.loads(NOTEBOOK.read_text())["cells"]


def _solution_cells():
    """The code cells between raw '# BEGIN SOLUTION' and '# END SOLUTION' cells."""
    out, inside = [], False
    for c in _cells():
        src = "".join(c["source"])
        if c["cell_type"] == "raw" and src.startswith("# BEGIN SOLUTION"):
            inside = True
        elif c["cell_type"] == "raw" and src.startswith("# END SOLUTION"):
            inside = False
        elif inside and c["cell_type"] == "code":
            out.append(src)
    return out


def _stub(src):
    """The student's version of a solution cell, as otter assign writes it: solution blocks removed, each
    prompt's lines kept."""
    out, skip = [], False
    for line in src.splitlines():
        s = line.strip()
        if s.startswith("# BEGIN SOLUTION"):
            skip = True
        elif s.startswith("# END SOLUTION"):
            skip = False
        elif s.endswith(("# BEGIN PROMPT", "# END PROMPT")):
            continue
        elif not skip:
            out.append(line)
    return "\n".join(out)


def _answers(transform):
    scope = {"torch": torch, "nn": torch.nn, "F": F, "IGNORE_INDEX": 255, "seeded_scores": ex.seeded_scores,
             "autocast": ex.autocast}
    for src in _solution_cells():
        exec(transform(src), scope)
    return scope


ARGUMENTS = {"seg_loss": ["seg_loss"], "adv_losses": ["adv_generator_loss", "adv_discriminator_loss"],
             "inconsistency_mask": ["inconsistency_mask"], "iast": ["iast_update", "pseudo_labels",
                                                                    "pseudo_label_loss"],
             "discrepancy": ["discrepancy"], "spl": ["spl_select", "budget_to_pixels"],
             "ppl": ["ppl_select", "allocate_points"], "baselines": ["random_select", "entropy_select"],
             "annotator": ["annotate", "batch"], "aspp": ["aspp_forward"],
             "pixel_selector": ["pixel_selector_forward"], "discriminator": ["discriminator_layers"],
             "selector_step": ["selector_step", "pixel_selector_forward"]}


def test_the_notebooks_solutions_pass_and_its_stubs_are_empty():
    """The source notebook's solutions pass every public and hidden check; its stubs (the solution blocks taken
    out, as otter assign does) each read 'not implemented yet'; every exercise has a question with a public and a
    hidden test calling its check with these arguments, and points."""
    solved, stubs = _answers(lambda s: s), _answers(_stub)
    for name in ex.EXERCISES:
        fns = [solved[a] for a in ARGUMENTS[name]]
        for hidden in (False, True):
            ok, printed = quiet(ex.check, name, *fns, hidden=hidden)
            assert ok, printed
        _, printed = quiet(ex.check, name, *[stubs[a] for a in ARGUMENTS[name]])
        assert "not implemented yet" in printed
    sources = ["".join(c["source"]) for c in _cells()]
    for name, args in ARGUMENTS.items():
        call = f'ex.verify("{name}", {", ".join(args)}'
        assert sum(call + ")" in s for s in sources) == 1 and sum(call + ", hidden=True)" in s for s in sources) == 1
        assert any(s.startswith(f"# BEGIN QUESTION\nname: {name}\npoints:") for s in sources)
    assert sum(s.startswith("# BEGIN QUESTION") and "manual: true" in s for s in sources) == 3   # W1-W3
    assert sum("**Model answer.**" in s for s in sources) == 3


def test_the_checks_run_without_the_project_in_reach(tmp_path):
    """A student copy holds the notebook, exercise_checks.py and the public outputs only: no labor.py,
    selection.py, models.py or train.py. The checks import none of them and still report."""
    for f in ("exercise_checks.py", "exercise_expected_public.pt"):
        shutil.copy(ROOT / "notebooks" / f, tmp_path / f)
    code = ("import sys; sys.path = [p for p in sys.path if 'labor' not in p and p not in ('', '.')]\n"
            "sys.path.insert(0, '.')\n"
            "import exercise_checks as ex, torch\n"
            "ok = ex.check('discrepancy', lambda a, b: (a.softmax(1) - b.softmax(1)).abs().mean())\n"
            "bad = ex.check('inconsistency_mask', lambda a, b: a.argmax() != b.argmax())\n"
            "import importlib.util\n"
            "assert all(importlib.util.find_spec(m) is None for m in ('labor', 'selection', 'models', 'train'))\n"
            "print('RESULT', ok, bad, sorted(m for m in sys.modules if m in ('labor', 'selection', 'models', 'train')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"})
    assert "RESULT True False []" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------------------------------------- otter (slow)

# Submissions built from the solutions with some functions replaced by wrong ones: each must lose exactly the
# points of these exercises (selector_step uses exercises 1, 4, 5 and 11, so breaking one of those costs it too).
SUBMISSIONS = {
    "wrong_a": ({"inconsistency_mask": "def inconsistency_mask(logits1, logits2):\n"
                                       "    return logits1.argmax() != logits2.argmax()\n",
                 "aspp_forward": "def aspp_forward(self, x):\n    return self.branches[0](x) + self.branches[1](x)\n",
                 "budget_to_pixels": "def budget_to_pixels(budget, height, width):\n"
                                     "    return max(1, int(budget * height * width)) if budget > 0 else 0\n"},
                {"inconsistency_mask", "aspp", "spl"}),
    "wrong_b": ({"discrepancy": "def discrepancy(logits1, logits2):\n"
                                "    return (F.softmax(logits1, 1) - F.softmax(logits2, 1)).abs().sum(1).mean()\n",
                 "discriminator_layers": "_layers = discriminator_layers\n"
                                         "def discriminator_layers(num_classes, ndf=64):\n"
                                         "    return nn.Sequential(*_layers(num_classes, ndf), nn.Sigmoid())\n"},
                {"discrepancy", "discriminator", "selector_step"}),
    "wrong_c": ({"adv_generator_loss": "def adv_generator_loss(d_out_t, gan='vanilla'):\n"
                                       "    return _criterion(d_out_t, 1.0, gan)\n",
                 "allocate_points": "def allocate_points(counts, n_points):\n"
                                    "    alloc = torch.zeros_like(counts)\n"
                                    "    for _ in range(int(min(n_points, int(counts.sum())))):\n"
                                    "        k = int(((counts - alloc) > 0).nonzero()[0])   # the lowest index first\n"
                                    "        alloc[k] += 1\n"
                                    "    return alloc\n",
                 "entropy_select": "def entropy_select(logits_a, n_per_image, exclude=None):\n"
                                   "    return random_select(logits_a[:, 0].shape, n_per_image, None, exclude)\n",
                 "annotate": "_annotate = annotate\n"
                             "def annotate(self, indices, selection):\n"
                             "    return _annotate(self, indices, torch.ones_like(selection))\n"},
                {"adv_losses", "ppl", "baselines", "annotator"}),
    "wrong_d": ({"iast_update": "_update = iast_update\n"
                                "def iast_update(prob, theta, alpha=0.2, beta=0.9, gamma=8.0):\n"
                                "    conf, pred = prob.max(dim=1)\n"
                                "    new = theta.clone()\n"
                                "    for c in range(theta.numel()):\n"
                                "        conf_c = torch.cat([conf[pred == c], theta[c:c + 1]])\n"
                                "        psi = torch.quantile(conf_c, float(1 - alpha * theta[c] ** gamma))\n"
                                "        new[c] = beta * theta[c] + (1 - beta) * psi        # no cap at 0.999\n"
                                "    return new\n",
                 "pixel_selector_forward": "def pixel_selector_forward(self, x, heads_on_detached=False):\n"
                                           "    _, feat = self.backbone(x)\n"
                                           "    l1, l2 = self.heads(feat)\n"
                                           "    return (l1, l2, feat, l1, l2) if heads_on_detached else (l1, l2, feat)\n",
                 "seg_loss": "def seg_loss(logits, labels, ignore_index=IGNORE_INDEX):\n"
                             "    up = F.interpolate(logits, size=labels.shape[-2:], mode='bilinear', align_corners=True)\n"
                             "    return F.cross_entropy(up, labels, ignore_index=ignore_index) if (labels != 255).any() \\\n"
                             "        else up.sum() * 0\n"},
                {"iast", "pixel_selector", "selector_step", "seg_loss"}),
}


def _submission(student_nb, replace, out):
    """The student copy with every stub filled by its solution, then the functions in `replace` redefined."""
    nb = json.loads(Path(student_nb).read_text())
    solutions = [s for s in _solution_cells()]
    k = 0
    for c in nb["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "code" and "raise NotImplementedError" in src:
            c["source"] = solutions[k]
            k += 1
    assert k == len(solutions)
    extra = "\n\n".join(replace.values())
    if extra:
        first = next(i for i, c in enumerate(nb["cells"]) if "def selector_step" in "".join(c["source"]))
        nb["cells"].insert(first + 1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                                       "source": extra})
    Path(out).write_text(json.dumps(nb))
    return out


@pytest.mark.slow
def test_otter_makes_the_student_copy_and_the_grader_scores_it(tmp_path):
    pytest.importorskip("otter")
    dist = tmp_path / "dist"
    run = subprocess.run([sys.executable, "-m", "otter", "assign", str(NOTEBOOK), str(dist)], capture_output=True,
                         text=True, timeout=600, cwd=ROOT)   # (python -m: the otter of this Python, on PATH or not)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    student = dist / "student"
    assert sorted(p.name for p in student.iterdir()) == ["06_exercises.ipynb", "exercise_checks.py",
                                                        "exercise_expected_public.pt"]
    text = (student / "06_exercises.ipynb").read_text()
    for answer in ("BEGIN SOLUTION", "Model answer", "torch.quantile(conf_c", "hidden=True", "This is the SOURCE"):
        assert answer not in text, answer
    assert (dist / "autograder" / "exercise_expected_hidden.pt").exists()

    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(student / "06_exercises.ipynb", subs / "stubs.ipynb")
    _submission(student / "06_exercises.ipynb", {}, subs / "solutions.ipynb")
    for name, (replace, _) in SUBMISSIONS.items():
        _submission(student / "06_exercises.ipynb", replace, subs / f"{name}.ipynb")
    out = subprocess.run([sys.executable, str(ROOT / "notebooks" / "grade_exercises.py"), str(subs), "--autograder",
                          str(dist / "autograder"), "--json", str(tmp_path / "grades.json")],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    grades = json.loads((tmp_path / "grades.json").read_text())
    by_name = {Path(k).stem: v for k, v in grades.items()}
    assert sum(g["score"] for g in by_name["solutions"].values()) == 32 == \
        sum(g["possible"] for g in by_name["solutions"].values())
    assert sum(g["score"] for g in by_name["stubs"].values()) == 0
    for name, (_, broken) in SUBMISSIONS.items():
        lost = {q for q, g in by_name[name].items() if g["score"] < g["possible"]}
        assert lost == broken, (name, lost)
        assert all(by_name[name][q]["score"] == 0 for q in broken), name
    assert "total" in out.stdout and "32 / 32" in out.stdout
