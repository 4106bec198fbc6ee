"""The model registry and its governance policy."""

from metalake.registry.governance import Policy, load_policy
from metalake.registry.lifecycle import RegisteredModel, VersionNotes
from metalake.registry.registry import ModelVersion, Registry

__all__ = ["ModelVersion", "Policy", "RegisteredModel", "Registry", "VersionNotes", "load_policy"]
