"""Helpers for tests and benchmarks (not used by the commands): small sprite banks made without SAM.

boxbank    a bank cut from real PBC images with their OI-PBC boxes (needs the PBC sample)
drawnbank  a bank of procedurally drawn cells (naturalize.drawn), written by the product's BankWriter
"""
