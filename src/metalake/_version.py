"""The metalake version, recorded in every commit."""

__version__ = "0.1.0"
