"""Measuring an asset against a reference: the toy world's judge and ground truth (``toy``). The sweeps,
CLIP, T3Bench and reports that use it live in ``distill3d.bench``, above the pipeline."""
