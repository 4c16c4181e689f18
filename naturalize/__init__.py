"""Naturalize: cut PBC blood-smear images into cell sprites and compose realistic new ones.

Data flow (one module owns each step):
    PBC tree --prepare--> records.csv --segment--> sprite bank --compose--> composites
    --build--> dataset tree (train/val/test/<CLASS>/) --classify--> trained run --> reports
"""

__version__ = "0.1.0"  # the only version definition (pyproject reads it; both CLIs print it)
