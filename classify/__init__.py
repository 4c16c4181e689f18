"""classify: train, evaluate, predict with and explain Keras 3 blood-cell classifiers on Naturalize datasets.

Modules: datasets (find and split a dataset tree), images (decode + resize + cache), batches (in-memory
batches with flip/rot90 augmentation), layers (custom Keras layers), models (the model registry), runs (the
run directory), train, evaluate, predict, scorecam, compare, plots, cli. Keras/TensorFlow are imported only inside
the functions that need them, so `import classify` stays light.
"""

from naturalize import __version__  # one version for both packages

__all__ = ["__version__"]
