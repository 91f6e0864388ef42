"""Evaluation of a generator or a folder of images: quality against the real floor, class
fidelity, memorisation, and the report with its verdict."""
