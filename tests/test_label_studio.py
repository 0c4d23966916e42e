"""A person answers the labelling round in Label Studio (issue 42), tested against a real server started here on
127.0.0.1 (requirements-annotate.txt; CI installs it): a scripted annotator answers every task from the ground truth
through the SDK, reading only the task's prediction and its image index, and the resumed run equals the oracle's
run bit for bit (weights, mIoU, labels bought, every logged loss). Also: paint outside the query (dropped, counted,
the same run), a partial round (exit 2, nothing changed, then --accept-partial), the server down or a wrong token
(one line naming the URL, exit 2, the run kept), a deleted task (named), two rounds (each stops and resumes).

Without Label Studio installed these tests are skipped, saying so."""
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train  # noqa: E402
from fakes import assert_equal  # noqa: E402
from tools import checkpoint as files  # noqa: E402
from tools import label_studio  # noqa: E402

SERVER = shutil.which("label-studio") or next(
    (str(p) for p in [Path(sys.executable).parent / "label-studio"] if p.is_file()), None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("label_studio_sdk") is None or SERVER is None,
    reason="Label Studio is not installed here (pip install -r requirements-annotate.txt; CI installs it)")]

TINY = ["--iters", "8", "--n-source", "8", "--n-target", "4", "--n-val", "4", "--size", "32", "64",
        "--batch-size", "2", "--width", "8", "--threads", "1", "--quiet"]
TOKEN = "0123456789abcdef0123456789abcdef01234567"


# ------------------------------------------------------------------------------------------------ the server

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real Label Studio on 127.0.0.1 (about 45 s to start; its database in a temporary folder), a fixed token."""
    home = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(home), "LABEL_STUDIO_USERNAME": "test@example.com",
           "LABEL_STUDIO_PASSWORD": "labor-reference", "LABEL_STUDIO_USER_TOKEN": TOKEN,
           "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "SENTRY_DSN": "", "COLLECT_ANALYTICS": "0"}
    log = open(home / "server.log", "wb")
    t0 = time.time()
    proc = subprocess.Popen([SERVER, "start", "--no-browser", "--host", "127.0.0.1", "--internal-host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if urllib.request.urlopen(url + "/health", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() - t0 > 600:
                pytest.fail(f"Label Studio did not start: {(home / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield SimpleNamespace(url=url, token=TOKEN, started_in=time.time() - t0)
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)   # its own process group: the server and what it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def sdk(server, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from label_studio_sdk import LabelStudio
    return LabelStudio(base_url=server.url, api_key=server.token)


# ------------------------------------------------------------------------------------------------ runs

def main(argv, capsys):
    """train.main in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        train.main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(code, err, *words):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for w in words:
        assert str(w) in lines[0], (w, lines[0])
    return lines[0]


_oracle = {}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """The same run with --annotator oracle, once per set of flags."""
    def get(*flags):
        if flags not in _oracle:
            out = tmp_path_factory.mktemp("oracle") / "run"
            args = train.get_args(["--out", str(out), *flags, *TINY])
            train.run(args)
            _oracle[flags] = out
        return _oracle[flags]
    return get


def ask(server, out, capsys, *flags, round_=1):
    """A run with --annotator label-studio up to its labelling round: exit 0, the one line, no metrics.json."""
    code, stdout, err = main(["--out", out, *flags, *TINY, "--annotator", "label-studio", "--label-studio-url",
                              server.url], capsys)
    assert code == 0, err
    return asked(out, stdout, round_)


def asked(out, stdout, round_=1):
    info = json.loads((Path(out) / label_studio.INFO).read_text())
    pid = info["project"]
    n = len(info["rounds"][-1]["tasks"])
    assert stdout.strip().splitlines()[-1] == (
        f"labelling round {round_}: {n} tasks in Label Studio project {pid} ({info['url']}/projects/{pid}); when "
        f"they are labelled: python train.py --resume {out}")
    assert not (Path(out) / "metrics.json").exists() and (Path(out) / files.CHECKPOINT).exists()
    return info


def resume(out, capsys, *extra):
    return main(["--resume", out, "--threads", "1", "--quiet", *extra], capsys)


def truth_of(flags):
    """Target-train ground truth of a run's data (the scripted annotator's eyes)."""
    _, target, _, classes = train.build_data(train.get_args([*flags, *TINY]))
    return (lambda i: target[i][1].numpy()), list(classes)


def field(obj, key):
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key)


def answer(sdk, info, flags, only=None, outside=0, seconds=lambda i: 2.0 + i):
    """The scripted annotator: for each task of the run's project without an annotation (or those of `only`, image
    indices), reads its prediction and image index, and answers the queried pixels from the ground truth: brush
    masks per true class over the prediction's masks, each key point relabelled with the true class at its pixel.
    outside > 0: also paints the first `outside` pixels outside the query (raster order) with class 0. Returns
    {image index: pixels painted outside}."""
    from label_studio_sdk.converter.brush import decode_rle, mask2rle
    truth, classes = truth_of(flags)
    painted_outside = {}
    for task in sdk.tasks.list(project=info["project"], fields="all"):
        i = task.data["image_index"]
        if task.annotations or (only is not None and i not in only):
            continue
        y = truth(i)
        h, w = y.shape
        result, query = [], np.zeros((h, w), bool)
        for item in field(task.predictions[-1], "result"):
            v = item["value"]
            if item["type"] == "brushlabels":
                query |= decode_rle(v["rle"]).reshape(h, w, 4)[:, :, 3] > 0
            else:
                row, col = int(v["y"] / 100 * h), int(v["x"] / 100 * w)
                query[row, col] = True
                if y[row, col] != 255:
                    result.append({**item, "id": f"a{len(result)}", "value": {**v, "keypointlabels": [classes[y[row, col]]]}})
        if any(item["type"] == "brushlabels" for item in field(task.predictions[-1], "result")):
            for k in np.unique(y[query]):
                if k != 255:
                    result.append(brush(f"a{len(result)}", query & (y == k), classes[k], mask2rle))
        if outside:
            extra = np.zeros(h * w, bool)
            extra[np.flatnonzero(~query.flatten())[:outside]] = True
            result.append(brush("outside", extra.reshape(h, w), classes[0], mask2rle))
            painted_outside[i] = outside
        sdk.annotations.create(id=task.id, result=result, lead_time=seconds(i))
    return painted_outside


def brush(id_, mask, name, mask2rle):
    h, w = mask.shape
    return {"id": id_, "from_name": "mask", "to_name": "image", "type": "brushlabels", "original_width": w,
            "original_height": h, "value": {"format": "rle", "rle": mask2rle((mask * 255).astype(np.uint8)),
                                            "brushlabels": [name]}}


def assert_same_as_oracle(ref, out):
    """The person's run equals the oracle's: final weights, mIoU, labels bought, every logged loss, the round's
    counts, the checkpoint's every model, optimiser, theta and RNG state."""
    a = torch.load(ref / "model_A.pt", weights_only=True)["A"]
    b = torch.load(out / "model_A.pt", weights_only=True)["A"]
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (ref, out))
    for k in ("miou", "per_class_iou", "labelled_pixels", "labelled_fraction", "images_annotated", "points_per_image",
              "required_fraction", "annotation_seconds", "history", "selector_history"):
        assert ma[k] == mb[k], k
    assert [{k: v for k, v in r.items() if k != "label_studio"} for r in mb["selection_rounds"]] == \
        ma["selection_rounds"]
    sa, sb = (torch.load(d / files.SELECTION, weights_only=True) for d in (ref, out))
    for k in ("image_index", "pixel_index", "label"):
        assert torch.equal(sa[k], sb[k]), k
    ca, cb = (torch.load(d / files.CHECKPOINT, weights_only=True) for d in (ref, out))
    for k in ("nets", "opts", "theta", "rng", "iter", "history", "rounds_done"):
        assert_equal(ca[k], cb[k], k)
    return ma, mb


def snapshot(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------------ the tests

@pytest.mark.parametrize("mode", ["spl", "ppl"])
def test_answers_from_the_ground_truth_give_the_oracles_run(mode, server, sdk, oracle, tmp_path, capsys):
    """SPL (brush masks) and PPL (key points): the tasks show exactly the query, pre-annotated with A's classes; a
    scripted annotator answers from the ground truth; the resumed run is the oracle's, bit for bit, and metrics.json
    records the seconds it took per image and in all beside cost.py's modelled seconds."""
    flags = ("--mode", mode)
    out = tmp_path / "run"
    info = ask(server, out, capsys, *flags)
    project = sdk.projects.get(id=info["project"])
    assert project.title == "run"
    # each task's pre-annotation is the query: exactly the queried pixels, with A's prediction as the classes
    query = torch.load(out / label_studio.QUERY, weights_only=True)
    tasks = {t.data["image_index"]: t for t in sdk.tasks.list(project=info["project"], fields="all")}
    assert sorted(tasks) == sorted(i for i, m in query["chosen"].items() if m.any())
    for i, t in tasks.items():
        shown = label_studio.labels_from_result(field(t.predictions[-1], "result"), info["classes"], *info["size"])
        assert torch.equal(shown != 255, query["chosen"][i])
        assert torch.equal(shown[query["chosen"][i]], query["pred_a"][i].long())
        types = {item["type"] for item in field(t.predictions[-1], "result")}
        assert types == ({"brushlabels"} if mode == "spl" else {"keypointlabels"})
        if mode == "ppl":
            assert len(field(t.predictions[-1], "result")) == int(query["chosen"][i].sum())
    assert resume(out, capsys)[0] == 2                   # nothing answered yet
    t0 = time.time()
    answer(sdk, info, flags)
    pulled = time.time()
    code, _, err = resume(out, capsys)
    assert code == 0, err
    print(f"[{mode}] server started in {server.started_in:.0f} s; answered {len(tasks)} tasks in "
          f"{pulled - t0:.1f} s; resumed (pull, buy, train, evaluate) in {time.time() - pulled:.1f} s")
    ref, person = assert_same_as_oracle(oracle(*flags), out)
    measured = person["annotation_seconds_measured"]
    assert measured["per_image"] == {str(i): 2.0 + i for i in tasks}
    assert measured["total"] == sum(2.0 + i for i in tasks)
    assert measured["mean_per_image"] == measured["total"] / 4      # per target-train image, as cost.py's
    assert person["annotation_seconds"]["per_image"] > 0            # the model's, beside it
    assert person["label_studio"]["dropped_pixels"] == person["label_studio"]["unanswered_pixels"] == 0


def test_paint_outside_the_query_is_dropped_and_counted(server, sdk, oracle, tmp_path, capsys):
    """An annotator who paints beyond the query: those pixels are dropped and counted (log line, metrics.json), and
    the run is the oracle's."""
    flags = ("--mode", "ppl")
    out = tmp_path / "run"
    info = ask(server, out, capsys, *flags)
    outside = answer(sdk, info, flags, outside=7)
    code, stdout, err = main(["--resume", out, "--threads", "1"], capsys)
    assert code == 0, err
    assert f"{7 * len(outside)} px painted outside the query dropped, 0 queried px unanswered" in stdout + err
    _, person = assert_same_as_oracle(oracle(*flags), out)
    assert person["label_studio"]["dropped_pixels"] == 7 * len(outside)


def test_a_partial_round_changes_nothing_then_accept_partial_goes_on(server, sdk, tmp_path, capsys):
    """Tasks without an annotation: how many, exit 2, the run folder unchanged; --accept-partial goes on, their
    queried pixels unlabelled and counted."""
    flags = ("--mode", "spl")
    out = tmp_path / "run"
    info = ask(server, out, capsys, *flags)
    images = sorted(int(i) for i in info["rounds"][0]["tasks"])
    answer(sdk, info, flags, only=images[:1])
    before = snapshot(out)
    one_error_line(*resume(out, capsys)[::2], f"{len(images) - 1} of {len(images)} tasks", "no annotation yet",
                   "--accept-partial")
    assert snapshot(out) == before
    code, _, err = resume(out, capsys, "--accept-partial")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    query = torch.load(out / label_studio.QUERY, weights_only=True)["chosen"]
    assert m["label_studio"]["tasks_unanswered"] == len(images) - 1
    assert m["label_studio"]["unanswered_pixels"] == sum(int(query[i].sum()) for i in images[1:])
    sel = torch.load(out / files.SELECTION, weights_only=True)
    assert set(sel["image_index"].tolist()) == {images[0]}      # labels of the answered image only
    assert list(m["annotation_seconds_measured"]["per_image"]) == [str(images[0])]


def test_server_down_or_a_wrong_token_is_one_line_and_the_run_is_kept(server, sdk, oracle, tmp_path, capsys,
                                                                      monkeypatch):
    """A wrong token when the round is pushed: one line naming the URL, exit 2, the checkpoint and the query kept;
    resumed with the right one, the run pushes. A server that does not answer when the run resumes: one line naming
    its URL, exit 2, nothing changed. With both fixed the run ends as the oracle's."""
    flags = ("--mode", "spl")
    out = tmp_path / "run"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-the-token")
    code, _, err = main(["--out", out, *flags, *TINY, "--annotator", "label-studio", "--label-studio-url",
                         server.url], capsys)
    one_error_line(code, err, server.url, "refuses the token", f"--resume {out}")
    assert (out / files.CHECKPOINT).exists() and (out / label_studio.QUERY).exists()
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    code, stdout, err = resume(out, capsys)
    assert code == 0, err
    info = asked(out, stdout)
    answer(sdk, info, flags)
    before = snapshot(out)
    down = f"http://127.0.0.1:{free_port()}"
    one_error_line(*resume(out, capsys, "--label-studio-url", down)[::2], down, "does not answer")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-the-token")
    one_error_line(*resume(out, capsys)[::2], server.url, "refuses the token")
    assert snapshot(out) == before
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    code, _, err = resume(out, capsys)
    assert code == 0, err
    assert_same_as_oracle(oracle(*flags), out)


def test_a_push_cut_short_is_pushed_again_whole(server, sdk, tmp_path, capsys):
    """A push that ended half-way (label_studio.json says round 1 was being pushed, its tasks not recorded): the
    resumed run deletes the round's tasks it finds and pushes them all again, one task per image."""
    flags = ("--mode", "ppl")
    out = tmp_path / "run"
    info = ask(server, out, capsys, *flags)
    first = set(info["rounds"][0]["tasks"].values())
    cut = {**info, "pushing": 1, "rounds": []}
    (out / label_studio.INFO).write_text(json.dumps(cut))
    code, stdout, err = resume(out, capsys)
    assert code == 0, err
    again = asked(out, stdout)
    assert "pushing" not in again and again["project"] == info["project"]
    now = {t.id: t.data["image_index"] for t in sdk.tasks.list(project=info["project"], fields="all")}
    assert set(now) == set(again["rounds"][0]["tasks"].values()) and len(now) == len(first)   # none twice
    assert sorted(now.values()) == sorted(int(i) for i in info["rounds"][0]["tasks"])


def test_a_deleted_task_is_named(server, sdk, tmp_path, capsys):
    """A task deleted in Label Studio: one line naming it and its image, exit 2; --accept-partial goes on without."""
    flags = ("--mode", "ppl")
    out = tmp_path / "run"
    info = ask(server, out, capsys, *flags)
    answer(sdk, info, flags)
    image, task = next(iter(info["rounds"][0]["tasks"].items()))
    sdk.tasks.delete(id=str(task))
    one_error_line(*resume(out, capsys)[::2], f"task {task} (target image {image}) no longer in Label Studio project "
                                              f"{info['project']}")
    code, _, err = resume(out, capsys, "--accept-partial")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["label_studio"]["tasks_deleted"] == m["label_studio"]["tasks_unanswered"] == 1


def test_each_round_stops_and_resumes(server, sdk, oracle, tmp_path, capsys):
    """RIPU as published labels in several rounds (five, three of them distinct at 8 iterations): the run stops at
    each, its tasks in the one project of the run, and ends as the oracle's."""
    flags = ("--mode", "ripu")
    out = tmp_path / "run"
    info = ask(server, out, capsys, *flags)
    rounds = len(train.select_iterations(train.get_args([*flags, *TINY])))
    assert rounds >= 2
    for r in range(2, rounds + 1):
        answer(sdk, info, flags)
        code, stdout, err = resume(out, capsys)
        assert code == 0, err
        again = asked(out, stdout, round_=r)
        assert again["project"] == info["project"] and [x["round"] for x in again["rounds"]] == list(range(1, r + 1))
        info = again
    answer(sdk, info, flags)
    code, _, err = resume(out, capsys)
    assert code == 0, err
    _, person = assert_same_as_oracle(oracle(*flags), out)
    assert len(person["selection_rounds"]) == rounds
    assert person["label_studio"]["tasks"] == sum(len(x["tasks"]) for x in info["rounds"])
