"""``python -m caffe <command> <args>``: the ``caffe`` tool (see caffe.cli)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
