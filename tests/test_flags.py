"""Every flag of `train.py --help` refuses a bad value before any work starts (issue 10): exit code 2, one line
`error: ...` naming the flag, no traceback, and nothing written (no run folder).

BAD_VALUES lists, for every flag the parser knows, values it must refuse. test_every_flag_has_bad_values walks
the parser's own list of flags, so a flag added without an entry here fails the tests: add the flag with a few
bad values (the edges of its range, a wrong type, a value of no meaning).

How a bad value is written:
  "0"            the flag, then the value:             --iters 0
  "16 16"        several words, for flags of nargs:    --size 16 16
  "=yes"         glued to the flag:                    --quiet=yes  (flags without a value, store_true and --help,
                 have no bad value of their own; argparse refuses one given to them, which is what is checked)
  "{tmp}"        this test's empty temporary folder; "{file}" an existing file in it
Each case runs `--mode spl --iters 2` with tiny settings and --out {tmp}/x (later words win, so a case may
override any of them).
"""
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train  # noqa: E402
from tools import flags  # noqa: E402

BAD_VALUES = {
    "--help": ["=yes"],
    "--mode": ["bogus", "SPL"],
    "--preset": ["huge"],
    # --- data
    "--data": ["mnist"],
    "--gta5-root": ["{tmp}/missing", "{file}"],
    "--source-root": ["{tmp}/missing", "{tmp}"], "--target-root": ["{tmp}"],
    "--classes": ["{tmp}/missing.json", "{tmp}"], "--img-suffix": ["png", "a/b.png"], "--seg-suffix": ["png"],
    "--cityscapes-root": ["{tmp}/missing", "{file}"],
    "--gta5-list": ["{tmp}/missing.txt", "{tmp}"],
    "--cityscapes-list": ["{tmp}/missing.txt", "{tmp}"],
    "--size": ["16 16", "32 31", "0 64", "-32 64", "x 64", "32"],
    "--shift": ["5", "-0.1", "nan", "strong"],
    "--thing-shift": ["1.5", "-0.1", "nan"],
    "--n-source": ["0", "-3", "2.5"],
    "--n-target": ["0"],
    "--n-val": ["0"],
    "--data-seed": ["-1", "1.5", "4294967296"],
    "--scenes": ["longtail", "Long-tail", "19"],
    "--eval-split": ["test"],
    "--num-workers": ["-1", "two"],
    # --- models
    "--model": ["resnet50"],
    "--width": ["0", "-8"],
    "--weights": ["{tmp}/missing.pth", "{tmp}"],
    "--ndf": ["0"],
    # --- optimisation
    "--iters": ["0", "-5", "ten", "1e3"],
    "--batch-size": ["0", "-2"],
    "--lr": ["-1", "0", "inf", "nan"],
    "--lr-d": ["0", "-1e-4"],
    "--momentum": ["1", "-0.5", "1.5"],
    "--weight-decay": ["-5e-4"],
    "--power": ["-1"],
    "--gan": ["wgan"],
    "--lambda-seg-aux": ["-0.1"],
    "--lambda-adv": ["-0.001", "inf"],
    "--lambda-adv-aux": ["-0.0002"],
    "--lambda-target": ["-1"],
    "--lambda-dis": ["-0.2"],
    "--iast-alpha": ["1.5", "-0.1"],
    "--iast-beta": ["-0.1", "2"],
    "--iast-gamma": ["-8"],
    # --- selection (with --iters 2: iteration 2 is past the end; 1.5 is no whole iteration)
    "--select-at": ["-0.5 --schedule joint", "2 --schedule joint", "1.5 --schedule joint", "0.5 7 --schedule joint",
                    "0.5"],  # (the last: a valid value, but the default, staged schedule labels after --warmup)
    "--budget": ["0", "1.5", "-0.02"],
    "--points": ["0", "-40"],
    "--ppl-space": ["pixels"],
    "--ppl-cell": ["-8", "4.5"],
    "--spl-cap": ["entropy"],
    # --- the annotator
    "--seconds-per-point": ["0", "-2.4", "nan"],
    "--seconds-per-click": ["0", "inf"],
    "--contour-tolerance": ["0", "-1"],
    "--annotator-noise": ["-0.1", "1.5", "half"],
    "--noise-band": ["0", "1.5"],
    # --- a person in Label Studio (an oracle run refuses its flags; a person makes no simulated slips)
    "--annotator": ["human", "label-studio --annotator-noise 0.1"],
    "--label-studio-url": ["localhost:8080", "http://localhost:8080"],
    "--accept-partial": ["=yes", ""],
    # --- schedule (with --iters 2: a warm-up of 2 leaves nothing after the labelling; 0.1 of 2 is no iteration)
    "--schedule": ["paper"],
    "--warmup": ["0", "-1", "2 --schedule staged", "1.5 --schedule staged"],
    "--selector-iters": ["0", "-3", "0.1 --schedule staged"],
    "--selector-init": ["imagenet"],
    # --- run
    "--seed": ["-1", "4294967296", "zero"],
    "--device": ["tpu"],
    "--out": ["{file}", "{file}/run", "/etc/passwd"],
    "--log-every": ["0"],
    "--threads": ["0", "-1"],
    "--quiet": ["=yes"],
    "--save-every": ["-1"],
    "--resume": ["{tmp}/missing", "{tmp}"],
    "--init-from": ["{tmp}/missing", "{tmp}"],
    "--budget-from": ["{tmp}/missing", "{tmp}", "{tmp} --budget 0.01"],
    "--amp": ["=yes"],
    "--source-size": ["16 16", "64 31"],
    "--target-size": ["31 64", "64"],
    "--benchmark": ["-1"],
    "--profile": ["=yes"],
    "--peak-tflops": ["0", "-1", "nan"],
}

BASE = ["--mode", "spl", "--iters", "2", "--n-source", "8", "--n-target", "6", "--n-val", "4", "--size", "32", "64",
        "--batch-size", "2", "--width", "8", "--threads", "1", "--quiet"]
CASES = [(flag, value) for flag, values in BAD_VALUES.items() for value in values]


def parser_flags():
    """The long name of every option of train.py's parser (-h/--help: --help)."""
    return {max(a.option_strings, key=len) for a in flags.build_parser()._actions if a.option_strings}


def words(flag, value, tmp):
    value = value.replace("{file}", str(tmp / "a-file")).replace("{tmp}", str(tmp))
    return [flag + value] if value.startswith("=") else [flag, *value.split()]


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def assert_one_clear_error(code, err, name):
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert name in lines[0], (name, err)


def test_every_flag_has_bad_values():
    flags = parser_flags()
    missing, stale = sorted(flags - BAD_VALUES.keys()), sorted(BAD_VALUES.keys() - flags)
    assert not missing, f"flags without bad values in BAD_VALUES: {missing}"
    assert not stale, f"BAD_VALUES names flags the parser lacks: {stale}"
    assert all(BAD_VALUES.values()), "every flag needs at least one bad value"


@pytest.mark.parametrize("flag, value", CASES, ids=[f"{f} {v}" for f, v in CASES])
def test_bad_value_is_refused_before_any_work(flag, value, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder\n")
    before = tree(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train.main(BASE + ["--out", str(tmp_path / "x")] + words(flag, value, tmp_path))
    assert_one_clear_error(e.value.code, capsys.readouterr().err, flag)
    assert tree(tmp_path) == before          # no run folder, nothing written anywhere in it
    assert (tmp_path / "a-file").read_text() == "not a folder\n"


def test_help_still_works(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage:")
    assert all(flag in out for flag in parser_flags())


# The issue's probes are all in BAD_VALUES; three of them also as a user types them (each start of python costs
# seconds): two refused by the parser, one by the run-folder check.
ISSUE_PROBES = [["--size", "16", "16"], ["--n-target", "0"], ["--out", "/etc/passwd"]]


@pytest.mark.slow
def test_the_issue_probes_from_the_command_line(tmp_path):
    """Each of these printed a traceback before: now one line, exit 2, no run folder."""
    for probe in ISSUE_PROBES:
        out = [] if probe[0] == "--out" else ["--out", str(tmp_path / "x")]
        t0 = time.time()
        r = subprocess.run([sys.executable, "train.py", *probe, *out], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        assert_one_clear_error(r.returncode, r.stderr, probe[0])
        assert time.time() - t0 < 60, probe      # refused at once, not after a training run
        assert not (tmp_path / "x").exists(), probe
