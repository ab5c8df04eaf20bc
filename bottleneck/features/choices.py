"""The names extraction options accept, in one light module (no NumPy, HDF5 or Keras).

The CLI builds its option choices from here at start-up, so ``--help`` and the small
commands import nothing heavy; the modules that act on the options import them from here.
"""

#: Precisions a base can run in (``--compute-dtype``).
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
#: Precisions a cache can store its features in (``--store-dtype``).
STORE_DTYPES = ("float32", "float16")
#: Lossless HDF5 filters for the features (``--compression``).
COMPRESSIONS = ("lzf", "gzip")
#: Where an extraction runs (``--engine``): the engine registry, name -> its module under
#: :mod:`features.engines` (imported only when it runs; adding an engine is its module and
#: one entry here).
ENGINES: dict[str, str] = {"local": "local", "dask": "dask", "ray": "ray"}
#: How a base's forward pass runs (``--runtime``): the runtime registry, name -> its module
#: under :mod:`features.runners` (imported only when it runs); ``auto`` picks one of them per
#: base and machine (:mod:`features.runners.probe`).
RUNTIMES: dict[str, str] = {"keras": "keras", "onnx": "onnx"}
#: Input layouts of an ONNX file base (``--layout``, :mod:`features.bases.onnx_file`).
LAYOUTS = ("nchw", "nhwc")
#: What ``--runtime`` accepts (the CLI's choices; checks read :func:`runtime_choices`).
RUNTIME_CHOICES = ("auto", *RUNTIMES)


def runtime_choices() -> tuple[str, ...]:
    """What ``runtime`` accepts now: ``auto`` and each registered runtime (read at call time,
    so a runtime is one entry in :data:`RUNTIMES`)."""
    return ("auto", *RUNTIMES)


#: Seconds a cluster run (``--engine dask|ray``) may wait before it stops with one line
#: (``--timeout``): to reach the scheduler, for a first worker, and while no worker runs its
#: shards (all workers died).
DASK_TIMEOUT = 60.0
#: The baselines an image base is measured against on the same images: its architecture with
#: random weights, and raw pixels (:mod:`features.baselines`).
IMAGE_BASELINES = ("random-base", "raw-pixels")
#: Every baseline: a text base's are random-base and TF-IDF (:mod:`features.text_baseline`).
BASELINES = (*IMAGE_BASELINES, "tfidf")
