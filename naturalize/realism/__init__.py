"""`naturalize realism`: can a critic tell synthetic images from real ones? (a classifier two-sample test)

data.py     the images of a folder: class from the file-name prefix, byte-identical copies dropped
pixels.py   the images decoded one way for every file format; near-copies (re-saved or re-encoded pictures)
critic.py   the critic (a small Keras CNN with flips) and the held-out AUC of one real-vs-other test
report.py   the per-class table, results JSON, AUC plot and Score-CAM saliency sheet (PNG)
run.py      the command: real vs synthetic and real vs real over seeds, then the report
"""

from naturalize.realism.run import realism

__all__ = ["realism"]
