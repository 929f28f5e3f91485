from pathlib import Path

import pytest

import guards
import phrases

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def mini() -> guards.Guard:
    """A small library exercising every matching feature, independent of the default data."""
    return guards.Guard(phrases.load_library(FIXTURES / "mini.json"))


@pytest.fixture(scope="session")
def default_guard() -> guards.Guard:
    return guards.Guard(phrases.load_library())
