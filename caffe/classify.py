"""Classify images from the command line (pycaffe's python/classify.py).

    python -m caffe.classify INPUT OUTPUT.npy [--model_def D] [--pretrained_model W]
        [--gpu] [--center_only] [--images_dim 256,256] [--mean_file F] [--input_scale S]
        [--raw_scale 255] [--channel_swap 2,1,0] [--ext jpg]

INPUT is an image, a directory of ``*.EXT`` images or a ``.npy`` array of
images; OUTPUT gets the (N x C) predictions.  Defaults are pycaffe's: the
CaffeNet deploy files under ``models/bvlc_reference_caffenet`` next to the
package, and ``caffe/imagenet/ilsvrc_2012_mean.npy`` (a per-channel stand-in
here; see caffe.imagenet).
"""
import argparse
import glob
import os
import sys
import time

import numpy as np

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(PACKAGE_DIR), "models",
                                 "bvlc_reference_caffenet")
DEFAULT_MEAN = os.path.join(PACKAGE_DIR, "imagenet", "ilsvrc_2012_mean.npy")


# The options and steps classify and detect share (pycaffe's scripts repeat them).
def add_model_args(parser):
    """--model_def and --pretrained_model, defaulting to the CaffeNet deploy files."""
    parser.add_argument("--model_def", default=os.path.join(DEFAULT_MODEL_DIR, "deploy.prototxt"),
                        help="Model definition file.")
    parser.add_argument("--pretrained_model",
                        default=os.path.join(DEFAULT_MODEL_DIR,
                                             "bvlc_reference_caffenet.caffemodel"),
                        help="Trained model weights file.")


def check_model_args(parser, args, check_input=True):
    """A usage message, not a traceback, when the model files are not there (the
    CaffeNet defaults are not shipped with the package) or the input is missing."""
    for flag, path in (("--model_def", args.model_def),
                       ("--pretrained_model", args.pretrained_model)):
        if not os.path.isfile(path):
            parser.error("%s %s: file not found%s" % (
                flag, path, " (the default CaffeNet files are not shipped: pass "
                "--model_def deploy.prototxt --pretrained_model weights.caffemodel)"
                if os.path.dirname(path) == DEFAULT_MODEL_DIR else ""))
    if args.mean_file and not os.path.isfile(args.mean_file):
        parser.error("--mean_file %s: file not found (pass --mean_file '' for none)"
                     % args.mean_file)
    if check_input and not os.path.exists(os.path.expanduser(args.input_file)):
        parser.error("input %s: no such file or folder" % args.input_file)


def add_preprocessing_args(parser):
    """--input_scale, --raw_scale and --channel_swap."""
    parser.add_argument("--input_scale", type=float,
                        help="Multiply input features by this scale to finish preprocessing.")
    parser.add_argument("--raw_scale", type=float, default=255.0,
                        help="Multiply raw input by this scale before preprocessing.")
    parser.add_argument("--channel_swap", default="2,1,0",
                        help="Order to permute input channels. The default converts "
                             "RGB -> BGR since BGR is the Caffe default by way of OpenCV.")


def parse_channel_swap(arg):
    """'2,1,0' -> [2, 1, 0]; '' -> None."""
    return [int(s) for s in arg.split(",")] if arg else None


def set_mode(gpu):
    import caffe
    if gpu:
        caffe.set_mode_gpu()
        print("GPU mode")
    else:
        caffe.set_mode_cpu()
        print("CPU mode")


def main(argv=None):
    import caffe
    parser = argparse.ArgumentParser(prog="python -m caffe.classify")
    parser.add_argument("input_file", help="Input image, directory, or npy.")
    parser.add_argument("output_file", help="Output npy filename.")
    add_model_args(parser)
    parser.add_argument("--gpu", action="store_true", help="Switch for gpu computation.")
    parser.add_argument("--center_only", action="store_true",
                        help="Predict from the center crop alone instead of averaging "
                             "predictions across crops (default).")
    parser.add_argument("--images_dim", default="256,256",
                        help="Canonical 'height,width' dimensions of input images.")
    parser.add_argument("--mean_file", default=DEFAULT_MEAN,
                        help="Data set image mean of [Channels x Height x Width] dimensions "
                             "(numpy array). Set to '' for no mean subtraction.")
    add_preprocessing_args(parser)
    parser.add_argument("--ext", default="jpg",
                        help="Image file extension to take as input when a directory is given "
                             "as the input file.")
    args = parser.parse_args(argv)
    check_model_args(parser, args)

    image_dims = [int(s) for s in args.images_dim.split(",")]
    mean = None
    if args.mean_file:
        mean = np.load(args.mean_file)
    channel_swap = parse_channel_swap(args.channel_swap)
    set_mode(args.gpu)
    classifier = caffe.Classifier(args.model_def, args.pretrained_model,
                                  image_dims=image_dims, mean=mean,
                                  input_scale=args.input_scale, raw_scale=args.raw_scale,
                                  channel_swap=channel_swap)
    input_file = os.path.expanduser(args.input_file)
    if input_file.endswith("npy"):
        print("Loading file: %s" % input_file)
        inputs = np.load(input_file)
    elif os.path.isdir(input_file):
        print("Loading folder: %s" % input_file)
        inputs = [caffe.io.load_image(f)
                  for f in sorted(glob.glob(input_file + "/*." + args.ext))]
    else:
        print("Loading file: %s" % input_file)
        inputs = [caffe.io.load_image(input_file)]
    print("Classifying %d inputs." % len(inputs))
    start = time.time()
    predictions = classifier.predict(inputs, not args.center_only)
    print("Done in %.2f s." % (time.time() - start))
    print("Saving results into %s" % args.output_file)
    np.save(args.output_file, predictions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
