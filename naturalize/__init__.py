"""Naturalize: cut PBC blood-smear images into cell sprites and compose realistic new ones.

Data flow (one module owns each step):
    PBC tree --records--> records.csv --segment--> sprite bank --compose--> composites
    --build--> dataset tree (train/val/test/<CLASS>/) --classify--> trained run --> reports
"""

from importlib.metadata import PackageNotFoundError, version

try:  # the one version string is pyproject.toml's, as installed
    __version__ = version("naturalize")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
