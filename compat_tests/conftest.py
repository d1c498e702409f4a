import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# Several tests read Caffe's INFO log lines from subprocesses; a quieting
# GLOG_minloglevel inherited from the caller's shell would hide them.
os.environ.pop("GLOG_minloglevel", None)
