"""Write the synthetic benchmark as folders of PNGs in the layout of your own data (docs/own_data.md):

    python -m tools.export_synthetic DIR [--n-source N --n-target N --n-val N --data-seed S --size H W --shift X
                                         --thing-shift X]

DIR/source/{img_dir,ann_dir}/train, DIR/target/{img_dir,ann_dir}/{train,val} and DIR/classes.json: the scenes
train.py's --data synthetic makes with the same flags (data.build_data), written losslessly (the scenes are uint8
and PNG keeps them bit for bit), so that

    python train.py --data folder --source-root DIR/source --target-root DIR/target --classes DIR/classes.json

trains on exactly what `python train.py` trains on (tests/test_folder_data.py checks the run is the same). Target
val is the benchmark's val split; the tuning split (--eval-split tune) is not written.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import data
from tools import UsageError
from tools.flags import ArgumentParser, add_data_flags, folder


def export(out, args):
    """Write the benchmark of these data flags under `out`; return the number of images written per split."""
    flags = argparse.Namespace(**{**vars(args), "data": "synthetic", "eval_split": "val"})
    flags.size = flags.size or [96, 192]
    source, target, evals, classes = data.build_data(flags)
    out = Path(out)
    counts = {}
    for side, split, scenes in (("source", "train", source), ("target", "train", target), ("target", "val", evals)):
        digits = max(6, len(str(len(scenes) - 1)))        # zero-padded names sort in scene order
        for kind, arrays in (("img_dir", scenes.images), ("ann_dir", scenes.labels)):
            folder = out / side / kind / split
            folder.mkdir(parents=True, exist_ok=True)
            for i, array in enumerate(arrays):
                Image.fromarray(np.ascontiguousarray(array)).save(folder / f"{i:0{digits}d}.png")
        counts[f"{side}/{split}"] = len(scenes)
    # the class file: names in train-ID order and their colours; no "map", the labels hold train IDs already
    (out / "classes.json").write_text(f'{{"classes": {json.dumps(list(classes))},\n'
                                      f' "palette": {json.dumps(source.palette.tolist())}}}\n')
    return counts


def main(argv=None):
    p = ArgumentParser(prog="python -m tools.export_synthetic", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=folder, metavar="DIR", help="where to write (made if missing; must be empty)")
    add_data_flags(p, synthetic_only=True)
    try:
        args = p.parse_args(argv)
        out = Path(args.dir)
        if out.exists() and any(out.iterdir()):
            raise UsageError(f"{out} is not empty; give a new or empty folder")
    except UsageError as e:   # one line and exit 2, as train.py
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    counts = export(out, args)
    print(f"wrote {', '.join(f'{n} {k}' for k, n in counts.items())} and {out / 'classes.json'}; train on it with:\n"
          f"python train.py --data folder --source-root {out / 'source'} --target-root {out / 'target'} "
          f"--classes {out / 'classes.json'}" + (f" --size {args.size[0]} {args.size[1]}" if args.size else ""))


if __name__ == "__main__":
    main()
