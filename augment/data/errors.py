"""The data layer's one error type (bad dataset input)."""

from __future__ import annotations


class DatasetError(ValueError):
    """Bad dataset input; the message names the file (and line, column or joint, where there is one)."""
