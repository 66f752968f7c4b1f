"""The model zoo: shared-backbone multi-task architectures behind one registry."""

from .backbone import DEFAULT_BACKBONE, Backbone, build_backbone
from .factory import create_model, is_model, list_models, resolve_tasks
from .registry import register_model

__all__ = [
    "DEFAULT_BACKBONE", "Backbone", "build_backbone", "create_model", "is_model", "list_models", "register_model",
    "resolve_tasks",
]
