"""The model registry and its governance policy."""

from metalake.registry.governance import Policy, load_policy
from metalake.registry.registry import ModelVersion, Registry

__all__ = ["ModelVersion", "Policy", "Registry", "load_policy"]
