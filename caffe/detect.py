"""Windowed detection from the command line (pycaffe's python/detect.py).

    python -m caffe.detect INPUT OUTPUT [--crop_mode list|selective_search]
        [--model_def D] [--pretrained_model W] [--gpu] [--mean_file F]
        [--input_scale S] [--raw_scale 255] [--channel_swap 2,1,0] [--context_pad 16]

INPUT is a ``.txt`` list of image paths (selective_search mode) or a ``.csv``
with ``filename,ymin,xmin,ymax,xmax`` columns (list mode).  OUTPUT is ``.csv``
(one row per window, columns ``ymin,xmin,ymax,xmax,class0..classN``) or
anything else for pandas HDF5 (key ``df``).  Reading the CSV and writing
results need pandas (``pip install pandas``; HDF5 output also ``tables``).
Unlike pycaffe, the CSV output writes the ``prediction`` column that
Detector produces (pycaffe's script reads a ``feat`` column that does not exist).
"""
import argparse
import sys
import time

import numpy as np

from .classify import (
    DEFAULT_MEAN,
    add_model_args,
    add_preprocessing_args,
    check_model_args,
    parse_channel_swap,
    set_mode,
)

CROP_MODES = ["list", "selective_search"]
COORD_COLS = ["ymin", "xmin", "ymax", "xmax"]


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise SystemExit("python -m caffe.detect: pandas is needed to read CSV window lists "
                         "and to write detections (pip install pandas)") from None
    return pd


def main(argv=None):
    import caffe
    parser = argparse.ArgumentParser(prog="python -m caffe.detect")
    parser.add_argument("input_file",
                        help="Input txt/csv filename. If .txt, must be list of filenames. "
                             "If .csv, must be comma-separated file with header "
                             "'filename, xmin, ymin, xmax, ymax'")
    parser.add_argument("output_file", help="Output h5/csv filename. Format depends on extension.")
    add_model_args(parser)
    parser.add_argument("--crop_mode", default="selective_search", choices=CROP_MODES,
                        help="How to generate windows for detection.")
    parser.add_argument("--gpu", action="store_true", help="Switch for gpu computation.")
    parser.add_argument("--mean_file", default=DEFAULT_MEAN,
                        help="Data set image mean of H x W x K dimensions (numpy array). "
                             "Set to '' for no mean subtraction.")
    add_preprocessing_args(parser)
    parser.add_argument("--context_pad", type=int, default=16,
                        help="Amount of surrounding context to collect in input window.")
    args = parser.parse_args(argv)
    check_model_args(parser, args, check_input=False)

    mean = None
    if args.mean_file:
        mean = np.load(args.mean_file)
        if mean.shape[1:] != (1, 1):
            mean = mean.mean(1).mean(1)
    channel_swap = parse_channel_swap(args.channel_swap)
    set_mode(args.gpu)
    pd = _pandas()
    detector = caffe.Detector(args.model_def, args.pretrained_model, mean=mean,
                              input_scale=args.input_scale, raw_scale=args.raw_scale,
                              channel_swap=channel_swap, context_pad=args.context_pad)
    t = time.time()
    print("Loading input...")
    if args.input_file.lower().endswith("txt"):
        with open(args.input_file) as f:
            inputs = [line.strip() for line in f if line.strip()]
    elif args.input_file.lower().endswith("csv"):
        inputs = pd.read_csv(args.input_file, sep=",", dtype={"filename": str})
        inputs.columns = [c.strip() for c in inputs.columns]
        inputs.set_index("filename", inplace=True)
    else:
        raise SystemExit("Unknown input file type: not in txt or csv.")
    if args.crop_mode == "list":
        if not hasattr(inputs, "index"):
            raise SystemExit("--crop_mode list needs a .csv of windows")
        images_windows = [(ix, inputs.iloc[np.where(inputs.index == ix)][COORD_COLS].values)
                          for ix in inputs.index.unique()]
        detections = detector.detect_windows(images_windows)
    else:
        detections = detector.detect_selective_search(inputs)
    print("Processed {} windows in {:.3f} s.".format(len(detections), time.time() - t))

    df = pd.DataFrame(detections)
    df.set_index("filename", inplace=True)
    df[COORD_COLS] = pd.DataFrame(data=np.vstack(df["window"]), index=df.index,
                                  columns=COORD_COLS)
    del df["window"]
    t = time.time()
    if args.output_file.lower().endswith("csv"):
        preds = np.vstack(df["prediction"])
        class_cols = ["class{}".format(x) for x in range(preds.shape[1])]
        df[class_cols] = pd.DataFrame(data=preds, index=df.index, columns=class_cols)
        df[COORD_COLS + class_cols].to_csv(args.output_file)
    else:
        df.to_hdf(args.output_file, key="df", mode="w")
    print("Saved to {} in {:.3f} s.".format(args.output_file, time.time() - t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
