"""Phrase libraries as validated data: the schema, the default zh-CN library, and its loader."""

from .loader import LibraryError, library_from_data, load_default_data, load_library
from .schema import CATEGORIES, Library, Rule, Template, Thresholds

__all__ = [
    "CATEGORIES",
    "Library",
    "LibraryError",
    "Rule",
    "Template",
    "Thresholds",
    "library_from_data",
    "load_default_data",
    "load_library",
]
