"""Console scripts: ``hpatches-data``, ``hpatches-eval``, ``hpatches-train``."""

import os

# Quiet TensorFlow's C++ start-up chatter for the command-line tools (users can still override it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
