"""The model registry and its governance policy."""
