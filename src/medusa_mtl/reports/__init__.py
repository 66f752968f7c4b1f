"""What the engine's results become: the benchmark (the main job) and its claims, the trivial predictor,
resource tables, prediction pictures.

Layer rule: reports use the engine, models, data and tasks, and never import from ``cli``.
"""
