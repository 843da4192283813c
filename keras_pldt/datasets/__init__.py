"""Datasets shipped with the package (generated, not downloaded)."""

from . import synthetic
from .synthetic import default_dataset

__all__ = ["default_dataset", "synthetic"]
