"""``python -m caffe.tools.split_scale in.prototxt [in.caffemodel] out.prototxt [out.caffemodel]``
(see caffe.tools.merge_bn, which holds all three rewrites)."""
import sys

from .merge_bn import main, split_scale  # noqa: F401  (the Python API)

if __name__ == "__main__":
    sys.exit(main(tool="split_scale"))
