"""The engine: training (Lightning module and data module), evaluation, universal feature learning,
pretraining of the shared backbone, checkpoints and reproducibility.

Layer rule: the engine builds on tasks, data and models and never imports from ``reports`` or ``cli``.
"""
