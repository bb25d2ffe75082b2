"""Console scripts: ``hpatches-data``, ``hpatches-eval``, ``hpatches-train``.

Each ``main`` parses its arguments, then calls :func:`hpatches_kit.log.setup_cli_logging` (``-q/-v``; TensorFlow's
C++/absl start-up lines hidden unless ``-v``) before anything imports TensorFlow.
"""
