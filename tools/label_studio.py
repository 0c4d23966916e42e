"""A person answers LabOR's labelling rounds in Label Studio (--annotator label-studio; docs/annotating.md). None of
this is LabOR: the run asks for the same pixels as with the built-in oracle and learns from the answers the same way;
only who answers differs, and when (the run stops after choosing, a person labels, --resume buys and goes on).

    Person(args, rt, out)        a run's side of it: its two files, the server's address, the token
      .save_query(r, query)      label_studio_query.pt: round r's chosen pixels and A's prediction on them
      .push(r, query, ...)       the run's project (named after its folder; one per run, reused by later rounds), one
                                 task per target image with queried pixels, the query as its pre-annotation;
                                 label_studio.json (URL, project, task per image); returns the line saying how to go on
      .read_answers(r)           on --resume: each task's latest annotation as a class per queried pixel
      .label_of(i)               image i's answers, (H, W), 255 where none: what selection.Annotator reveals
      .record(r)                 what the answers left out or added, the seconds the person took (metrics.json)

    label_config(classes, palette)      the labelling page: a brush and key points, one label per class
    regions_result / points_result      a query as Label Studio results (A's prediction on the queried pixels)
    labels_from_result                  Label Studio results back to a class per pixel

A query of regions (SPL, capped SPL, RIPU's regions: selection.SELECTORS' kind) is shown as one brush mask per class
A predicts there, together exactly the queried pixels; a query of points as one key point per queried pixel at its
centre, labelled with A's class. The SDK (label-studio-sdk) is imported only by a run that asks a person.
"""
import base64
import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import torch
from PIL import Image

import data
import selection
from tools import UsageError
from tools.checkpoint import FORMAT, load_safe, save_atomic

INFO, QUERY = "label_studio.json", "label_studio_query.pt"
TOKEN = "LABEL_STUDIO_API_KEY"
DEFAULT_URL = "http://localhost:8080"   # where `label-studio start` listens unless told otherwise
IMPORT_CHUNK = 50                       # tasks per import request (each holds its image as a data URI)
POINT_WIDTH = 0.6                       # a key point's drawn size, in percent of the image width
INSTRUCTION = ("The model asks for the pixels pre-annotated here, each with its own guess: relabel or repaint each "
               "one with its true class (brush: paint over it with the right label; point: change its label). "
               "Only the pre-annotated pixels count; paint beyond them is dropped.")


# ------------------------------------------------------------------------------------------------ the run's side

class Person:
    """--annotator label-studio for one run: its files in the run folder, the server, the answers of the round the
    run stopped at (read on --resume)."""

    def __init__(self, args, rt, out):
        if rt.world > 1:
            raise UsageError("--annotator label-studio runs in one process (no torchrun): a person answers each "
                             "round between two runs")
        self.out, self.mode = Path(out), args.mode
        self.accept_partial = bool(getattr(args, "accept_partial", False))
        info = self._info()
        self.url = (args.label_studio_url or info.get("url") or DEFAULT_URL).rstrip("/")
        self.answers = None   # (round, {image: (H, W) labels}, record), once read
        self.size = None      # (H, W) of the target-train images

    # ---- the files ----------------------------------------------------------------------------------------------

    def _info(self):
        path = self.out / INFO
        return json.loads(path.read_text()) if path.is_file() else {}

    def _save_info(self, info):
        save_atomic(json.dumps(info, indent=2), self.out / INFO)

    def query(self, r):
        """Round r's query as the run saved it before a person saw it (None: round r was not asked yet)."""
        path = self.out / QUERY
        if not path.is_file():
            return None
        saved = load_safe(path, "Label Studio query")
        return selection.Query(saved["chosen"], saved["pred_a"], saved["masks"]) if saved["round"] == r else None

    def save_query(self, r, query):
        """Round r's query, and the server's address (a resumed run finds it there when the push failed)."""
        save_atomic({"format": FORMAT, "round": r, **query._asdict()}, self.out / QUERY)
        self._save_info({**self._info(), "url": self.url})

    # ---- asking -------------------------------------------------------------------------------------------------

    def answered(self, r, query):
        """Round r's answers are in; a round that asks for no pixel at all is answered at once (nothing to show)."""
        if not any(m.any() for m in query.chosen.values()):
            self.size = next(iter(query.chosen.values())).shape
            self.answers = (r, {}, self._record(r, query, {}, 0, 0, 0, 0, 0))
        return self.answers is not None and self.answers[0] == r

    def push(self, r, query, classes, images):
        """Put round r in Label Studio: the run's project (created at its first round), one task per image with
        queried pixels, the query as each task's prediction. Writes label_studio.json; returns the line to print."""
        info = self._info()
        kind = selection.modes()[self.mode].selector.kind
        asked = [i for i in sorted(query.chosen) if query.chosen[i].any()]
        with self._server() as ls:
            if "project" not in info:
                project = ls.projects.create(title=self.out.name, label_config=label_config(classes, images.palette),
                                             description=f"labor-reference run {self.out}")
                h, w = next(iter(query.chosen.values())).shape
                info = {"url": self.url, "project": project.id, "title": self.out.name, "classes": list(classes),
                        "size": [h, w], "rounds": []}
                self._save_info(info)   # a kill from here on reuses this project
            if info.get("pushing") == r + 1:   # this round's push failed half-way: its tasks go, all come again
                for t in ls.tasks.list(project=info["project"], fields="task_only", page_size=100):
                    if t.data.get("round") == r + 1:
                        ls.tasks.delete(id=str(t.id))
            info.update(url=self.url, pushing=r + 1)
            self._save_info(info)
            tasks = []
            for k in range(0, len(asked), IMPORT_CHUNK):
                chunk = asked[k:k + IMPORT_CHUNK]
                done = ls.projects.import_tasks(id=info["project"], return_task_ids=True, request=[
                    {"data": {"image": png_data_uri(images[i][0]), "image_index": i, "round": r + 1},
                     "predictions": [{"model_version": f"{self.out.name} round {r + 1}",
                                      "result": query_result(kind, query.chosen[i], query.pred_a[i], classes)}]}
                    for i in chunk])
                tasks += list(done.task_ids)   # (in the order of the request)
        info["rounds"].append({"round": r + 1, "kind": kind, "tasks": {str(i): t for i, t in zip(asked, tasks)}})
        del info["pushing"]
        self._save_info(info)
        pid = info["project"]
        return (f"labelling round {r + 1}: {len(asked)} tasks in Label Studio project {pid} ({self.url}/projects/"
                f"{pid}); when they are labelled: python train.py --resume {self.out}")

    # ---- the answers --------------------------------------------------------------------------------------------

    def read_answers(self, r):
        """On --resume: the answers to round r if the run stopped there with its tasks in Label Studio. Each task's
        latest annotation, as a class per pixel of the query (paint outside it dropped, queried pixels left
        unanswered stay unlabelled; both counted). Tasks without an annotation, or deleted: a UsageError that changes
        nothing, unless --accept-partial."""
        query, info = self.query(r), self._info()
        pushed = next((x for x in info.get("rounds", []) if x["round"] == r + 1), None)
        if query is None or pushed is None:
            return
        pid, classes, (h, w) = info["project"], info["classes"], info["size"]
        self.size = (h, w)
        where = f"Label Studio project {pid} ({self.url}/projects/{pid})"
        with self._server() as ls:
            ls.projects.get(id=pid)   # a deleted project: 404, said as such
            found = {t.id: t for t in ls.tasks.list(project=pid, fields="all", page_size=100)}
        tasks = {int(i): t for i, t in pushed["tasks"].items()}
        deleted = [(i, t) for i, t in tasks.items() if t not in found]
        latest = {i: latest_annotation(found[t]) for i, t in tasks.items() if t in found}
        waiting = [i for i, a in latest.items() if a is None]
        if (deleted or waiting) and not self.accept_partial:
            said = []
            if deleted:
                names = ", ".join(f"{t} (target image {i})" for i, t in deleted[:5]) + (", ..." if len(deleted) > 5
                                                                                        else "")
                said.append(f"task{'s' if len(deleted) > 1 else ''} {names} no longer in {where} (deleted there?)")
            if waiting:
                said.append(f"{len(waiting)} of {len(tasks)} tasks in {where} have no annotation yet")
            raise UsageError(f"labelling round {r + 1}: {'; '.join(said)}; nothing was changed: answer them and resume "
                             f"again, or resume with --accept-partial to go on without them")
        labels, seconds, dropped, unanswered = {}, {}, 0, 0
        for i, chosen in query.chosen.items():
            if not chosen.any():
                continue
            got = latest.get(i)
            y = labels_from_result(got["result"] if got else [], classes, h, w)
            painted = y != selection.IGNORE_INDEX
            dropped += int((painted & ~chosen).sum())
            y[~chosen] = selection.IGNORE_INDEX
            unanswered += int((chosen & (y == selection.IGNORE_INDEX)).sum())
            labels[i] = y
            if got:
                seconds[i] = float(got.get("lead_time") or 0.0)
        self.answers = (r, labels, self._record(r, query, seconds, len(tasks), len(deleted) + len(waiting),
                                                len(deleted), dropped, unanswered, pid))

    def _record(self, r, query, seconds, tasks, tasks_unanswered, tasks_deleted, dropped, unanswered, pid=None):
        return {"url": self.url, "project": pid, "tasks": tasks, "tasks_unanswered": tasks_unanswered,
                "tasks_deleted": tasks_deleted, "dropped_pixels": dropped, "unanswered_pixels": unanswered,
                "seconds": seconds, "mean_per_image": sum(seconds.values()) / max(len(query.chosen), 1)}

    def label_of(self, i):
        """Image i's answers (H, W) long, 255 where none (an image without queried pixels: none at all)."""
        labels = self.answers[1]
        return labels[i] if i in labels else torch.full(self.size, selection.IGNORE_INDEX, dtype=torch.long)

    def record(self, r):
        """Round r's record for metrics.json: tasks, pixels dropped and unanswered, seconds per image (lead_time)."""
        assert self.answers is not None and self.answers[0] == r
        return self.answers[2]

    # ---- the server ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _server(self):
        """The SDK's client; a server that does not answer, refuses the token or lost the project: one UsageError
        naming the URL (the run is saved, so --resume goes on once it is fixed)."""
        ls, httpx, api_error = connect(self.url)
        again = f"the run is saved: python train.py --resume {self.out} goes on once it is fixed"
        try:
            yield ls
        except httpx.HTTPError as e:
            raise UsageError(f"Label Studio at {self.url} does not answer ({type(e).__name__}: "
                             f"{one_line(e) or 'no reply'}); start it (docs/annotating.md) or give its address with "
                             f"--label-studio-url; {again}") from None
        except api_error as e:
            if e.status_code in (401, 403):
                raise UsageError(f"Label Studio at {self.url} refuses the token in {TOKEN} (HTTP {e.status_code}); "
                                 f"set it to your token (Label Studio's Account & Settings); {again}") from None
            if e.status_code == 404:
                raise UsageError(f"Label Studio at {self.url} has no project {self._info().get('project')} (HTTP "
                                 f"404: deleted, or another server?); {again}") from None
            raise UsageError(f"Label Studio at {self.url} answered HTTP {e.status_code}: {one_line(e.body)[:300]}; "
                             f"{again}") from None


def connect(url):
    """(client, httpx, ApiError): the SDK imported here, its warnings about other packages silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import httpx
        from label_studio_sdk import LabelStudio
        from label_studio_sdk.core.api_error import ApiError
    return LabelStudio(base_url=url, api_key=os.environ.get(TOKEN, ""), timeout=300), httpx, ApiError


def one_line(x):
    return " ".join(str(x or "").split())


# ------------------------------------------------------------------------------------------------ the tasks

def label_config(classes, palette=None):
    """The labelling page: the image, a brush and key points, both with one label per class (its colour from the
    dataset's palette)."""
    def labels():
        return "".join(f'<Label value={quoteattr(c)}'
                       + (f' background="#{bytes(int(v) for v in palette[k]).hex()}"' if palette is not None else "")
                       + "/>" for k, c in enumerate(classes))
    return (f'<View><Header value={quoteattr(INSTRUCTION)}/>'
            f'<Image name="image" value="$image" zoom="true" zoomControl="true"/>'
            f'<BrushLabels name="mask" toName="image">{labels()}</BrushLabels>'
            f'<KeyPointLabels name="points" toName="image">{labels()}</KeyPointLabels></View>')


def png_data_uri(image):
    """A (3, H, W) image in [0, 1] as a PNG data URI (the task holds its image: no file server needed)."""
    buf = io.BytesIO()
    Image.fromarray(data.denormalize(image)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def query_result(kind, chosen, pred_a, classes):
    """An image's query as Label Studio results: brush masks for regions (and full supervision), points else."""
    return (points_result if kind == "points" else regions_result)(chosen, pred_a, classes)


def regions_result(chosen, pred_a, classes):
    """One brush mask (RLE) per class A predicts on the queried pixels; together exactly the queried pixels.
    chosen: (H, W) bool; pred_a: (n,) A's classes on them, in raster order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from label_studio_sdk.converter.brush import mask2rle
    h, w = chosen.shape
    pred = torch.full((h, w), -1, dtype=torch.long)
    pred[chosen] = pred_a.long()
    return [{"id": f"query-{k}", "from_name": "mask", "to_name": "image", "type": "brushlabels",
             "original_width": w, "original_height": h, "image_rotation": 0,
             "value": {"format": "rle", "rle": mask2rle(((pred == k).numpy() * 255).astype(np.uint8)),
                       "brushlabels": [classes[k]]}}
            for k in sorted(set(pred_a.long().tolist()))]


def points_result(chosen, pred_a, classes):
    """One key point per queried pixel, at its centre (x = (col + 0.5) / W * 100, y likewise, in percent), labelled
    with A's class there."""
    h, w = chosen.shape
    rows, cols = chosen.nonzero(as_tuple=True)   # raster order, as pred_a
    return [{"id": f"query-{n}", "from_name": "points", "to_name": "image", "type": "keypointlabels",
             "original_width": w, "original_height": h, "image_rotation": 0,
             "value": {"x": (c + 0.5) / w * 100, "y": (y + 0.5) / h * 100, "width": POINT_WIDTH,
                       "keypointlabels": [classes[k]]}}
            for n, (y, c, k) in enumerate(zip(rows.tolist(), cols.tolist(), pred_a.long().tolist()))]


def labels_from_result(result, classes, h, w):
    """Label Studio results to a class per pixel, (H, W) long, 255 where nothing was given: brush masks first (in
    their order: a later one paints over an earlier), then each key point's label at the pixel it lies in. Other
    results, and labels that are not a class, are left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from label_studio_sdk.converter.brush import decode_rle
    out = torch.full((h, w), selection.IGNORE_INDEX, dtype=torch.long)
    index = {c: k for k, c in enumerate(classes)}
    for item in sorted(result, key=lambda it: it.get("type") == "keypointlabels"):   # (a stable sort)
        value = item.get("value", {})
        if item.get("type") == "brushlabels" and value.get("format") == "rle" and value.get("brushlabels"):
            k = index.get(value["brushlabels"][0])
            if k is None:
                continue
            size = (item.get("original_height", h), item.get("original_width", w))
            if size != (h, w):
                raise UsageError(f"a brush mask of {size[1]}x{size[0]} pixels on a {w}x{h} image: the task's image "
                                 f"was changed in Label Studio")
            mask = decode_rle(value["rle"]).reshape(h, w, 4)[:, :, 3] > 0
            out[torch.from_numpy(mask)] = k
        elif item.get("type") == "keypointlabels" and value.get("keypointlabels"):
            k = index.get(value["keypointlabels"][0])
            if k is None:
                continue
            row = min(max(int(value["y"] / 100 * h), 0), h - 1)
            col = min(max(int(value["x"] / 100 * w), 0), w - 1)
            out[row, col] = k
    return out


def latest_annotation(task):
    """A task's latest annotation that was not skipped (a dict: result, lead_time, ...), None if it has none."""
    kept = [a for a in (task.annotations or []) if not a.get("was_cancelled")]
    return max(kept, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a["id"])) if kept else None
