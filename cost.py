"""What a label costs a person: seconds of annotator time for what a selector asks, per image (not in the paper).

LabOR counts its budget in pixels; a person does not. A click in the middle of a road is one click with its class;
a sliver of SPL's mask along an object boundary has to be outlined, class by class. The model here follows Cai et
al. (CVPR 2021, "Revisiting superpixels for active learning in semantic segmentation with realistic annotation
costs"), which counts clicks rather than pixels:

    a point (random pixels, entropy, PPL, RIPU's points)   one click with its class
    a region (SPL's mask, RIPU's 3x3 boxes, capped SPL)    per connected piece: one click if it holds one class
                                                           (its dominant label), else the polygon vertices of every
                                                           class's part inside it plus the crossings of the piece's
                                                           own outline from one class to another
    a full image (supervised)                              the polygon vertices of every connected part of every
                                                           class, plus one click per part (Cai et al.'s count of
                                                           Cityscapes' fine annotation)

Cai et al. count the vertices of Cityscapes' own polygons inside a region; we have no annotator's polygons, so we
trace each class's part: its contours (skimage.measure.find_contours) simplified at CONTOUR_TOLERANCE pixels
(skimage.measure.approximate_polygon), at least 4 vertices each. Everything here reads only the asked region and the
labels revealed there.
"""
import numpy as np
from skimage import measure

# Seconds per polygon click: Cityscapes' fine annotation "required more than 1.5h on average for a single image",
# quality control included (Cordts et al., CVPR 2016, Sec. 2.2); its train-set polygons hold 4,756,857 vertices and
# 338,302 components (Cai et al.'s count, cailile/Revisiting-Superpixels-for-Active-Learning,
# scripts/write_bash_files.py), 1,713 clicks per image: 5,400 s / 1,713 = 3.2 s a click, quality control included.
SECONDS_PER_POLYGON_CLICK = 3.2
# Seconds per point with its class (and per dominant-label click on a region): Bearman et al.'s time per click,
# timePerClick = 2.4 in their timing script (abearman/whats-the-point1, plot_times.m; ECCV 2016, "What's the point"),
# which includes choosing the class.
SECONDS_PER_POINT = 2.4
CONTOUR_TOLERANCE = 0.75          # pixels a traced polygon may stray from the outline (below 1: an L keeps 6 corners)
CITYSCAPES_FULL_SECONDS = 5400.0  # Cordts et al.: "more than 1.5 h" per fine-annotated image
IGNORE_INDEX = 255
KINDS = ("points", "regions", "full")


def polygon_vertices(mask, tolerance=CONTOUR_TOLERANCE):
    """The vertices of the polygons that outline a binary mask (outer outlines and holes), each contour of
    find_contours simplified at `tolerance` pixels; at least 4 per contour (a single pixel is a square)."""
    padded = np.pad(np.asarray(mask, dtype=float), 1)                    # contours close at the image border
    total = 0
    for contour in measure.find_contours(padded, 0.5, fully_connected="high"):   # 8-connected, as the pieces
        poly = measure.approximate_polygon(contour, tolerance)
        total += max(len(poly) - 1, 4)   # closed: the last point repeats the first; a pixel shape has 4 corners
    return total


def outline_crossings(piece, labels, per_class=False):
    """Where a class boundary inside the piece meets the piece's own outline: the corners of the pixel grid that lie
    on the outline (some of their four pixels in the piece, some not), counted once for each class boundary that
    ends there (an edge between two pixels of the piece whose revealed classes differ). A piece split by one line
    into two classes has 2, a one-pixel-wide sliver of two classes too (the boundary crosses both long edges), a
    two-pixel-wide strip with one class per row also 2 (at its two ends). per_class=True: {class: the crossings
    it takes part in} (each crossing counts for both of its classes)."""
    inside = np.pad(np.asarray(piece, bool) & (np.asarray(labels) != IGNORE_INDEX), 1)
    lab = np.pad(np.asarray(labels).astype(np.int64), 1, constant_values=-1)
    # the four pixels around each grid corner: a b / c d
    a, b, c, d = inside[:-1, :-1], inside[:-1, 1:], inside[1:, :-1], inside[1:, 1:]
    la, lb, lc, ld = lab[:-1, :-1], lab[:-1, 1:], lab[1:, :-1], lab[1:, 1:]
    n_in = a.astype(int) + b + c + d
    on_outline = (n_in > 0) & (n_in < 4)
    edges = [(a & b & (la != lb), la, lb), (c & d & (lc != ld), lc, ld),       # the edges above and below the corner
             (a & c & (la != lc), la, lc), (b & d & (lb != ld), lb, ld)]       # left and right of it
    if not per_class:
        return int(sum((on_outline & e).sum() for e, _, _ in edges))
    out = {}
    for e, l1, l2 in edges:
        hit = on_outline & e
        for cls, k in zip(*np.unique(np.concatenate([l1[hit], l2[hit]]), return_counts=True)):
            out[int(cls)] = out.get(int(cls), 0) + int(k)
    return out


def region_clicks(asked, labels, tolerance=CONTOUR_TOLERANCE):
    """Clicks to label the asked region of one image, per class: (polygon, dominant), each {class: clicks}. asked:
    (H, W) bool; labels: (H, W), the revealed labels (255 where none). An 8-connected piece of the asked region
    that holds one class costs one dominant-label click ("dominant"); a piece with several classes costs the polygon
    vertices of each class's part inside it, plus the crossings of its outline, each shared by the two classes it
    separates ("polygon"). (Pieces never touch, so the parts of all pieces are outlined at once.)"""
    asked = np.asarray(asked, bool) & (np.asarray(labels) != IGNORE_INDEX)
    labels = np.asarray(labels)
    pieces, n = measure.label(asked, connectivity=2, return_num=True)
    if n == 0:
        return {}, {}
    ids, labs = pieces[asked] - 1, labels[asked]
    low = np.full(n, np.iinfo(np.int64).max)
    high = np.full(n, -1)
    np.minimum.at(low, ids, labs)
    np.maximum.at(high, ids, labs)
    single = low == high                                                     # (n,) a piece of one class
    dominant = {int(c): int(k) for c, k in zip(*np.unique(low[single], return_counts=True))}
    mixed = asked & ~single[np.maximum(pieces - 1, 0)]                       # (H, W) the pieces of several classes
    polygon = {}
    for c in np.unique(labels[mixed]):
        polygon[int(c)] = float(polygon_vertices(mixed & (labels == c), tolerance))
    for c, k in outline_crossings(mixed, labels, per_class=True).items():
        polygon[c] += k / 2                                                  # half of each crossing to each side
    return polygon, dominant


def full_image_clicks(labels, tolerance=CONTOUR_TOLERANCE):
    """Clicks to annotate a whole label map as Cai et al. count Cityscapes' polygons: the vertices of every
    8-connected part of every class plus one click per part. Returns {class: clicks}."""
    labels = np.asarray(labels)
    clicks = {}
    for c in np.unique(labels):
        if c != IGNORE_INDEX:
            mask = labels == c
            clicks[int(c)] = polygon_vertices(mask, tolerance) + int(measure.label(mask, connectivity=2).max())
    return clicks


def image_seconds(asked, labels, kind, seconds_per_point=SECONDS_PER_POINT,
                  seconds_per_click=SECONDS_PER_POLYGON_CLICK, tolerance=CONTOUR_TOLERANCE):
    """Annotator seconds for one image, per class of label: {class: seconds}. kind: "points" (one click with its
    class per asked pixel), "regions" (region_clicks) or "full" (full_image_clicks over `labels`)."""
    asked = np.asarray(asked, bool)
    labels = np.asarray(labels)
    if kind == "points":
        cls, counts = np.unique(labels[asked & (labels != IGNORE_INDEX)], return_counts=True)
        return {int(c): float(k) * seconds_per_point for c, k in zip(cls, counts)}
    if kind == "regions":
        polygon, dominant = region_clicks(asked, labels, tolerance)
        out = {c: float(k * seconds_per_click) for c, k in polygon.items()}
        for c, k in dominant.items():
            out[c] = out.get(c, 0.0) + k * seconds_per_point
        return out
    if kind == "full":
        return {c: float(k * seconds_per_click) for c, k in full_image_clicks(labels, tolerance).items()}
    raise ValueError(f"unknown kind {kind!r}: one of {KINDS}")


if __name__ == "__main__":  # python cost.py RUN_DIR [points|regions]: what a finished run's labels cost, per image
    import sys
    from pathlib import Path

    import torch
    if len(sys.argv) < 2:
        sys.exit("usage: python cost.py RUN_DIR [points|regions]  (the labels a run bought, in selection.pt)")
    bought = torch.load(Path(sys.argv[1]) / "selection.pt", weights_only=True)   # sparse: image, pixel, label
    h, w = bought["size"]
    images = bought["image_index"].unique().tolist()
    for kind in sys.argv[2:] or ["points", "regions"]:
        total = 0.0
        for i in images:
            here = bought["image_index"] == i
            labels = np.full(h * w, IGNORE_INDEX, dtype=np.int64)
            labels[bought["pixel_index"][here].numpy()] = bought["label"][here].numpy()
            labels = labels.reshape(h, w)
            total += sum(image_seconds(labels != IGNORE_INDEX, labels, kind).values())
        print(f"{kind}: {total / max(len(images), 1):.1f} s per image over the {len(images)} images labelled")
