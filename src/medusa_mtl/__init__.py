"""medusa-mtl: Medusa multi-task dense prediction, its baselines and universal feature learning."""

__version__ = "0.1.0"
