"""trainlab: the classic optimization and training techniques of neural networks.

Optimizers (SGD, momentum, RMSProp, Adam, AdamW) that state their equations and
reproduce torch, Keras and optax step for step; the training techniques as
components; and a laboratory that shows, compares, tunes and diagnoses them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trainlab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
