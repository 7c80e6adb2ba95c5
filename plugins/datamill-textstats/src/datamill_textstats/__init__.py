"""Text statistics as datamill operations: `readability`, `readability_filter`."""

from .readability import Readability, ReadabilityFilter, scores

__all__ = ["Readability", "ReadabilityFilter", "scores"]
