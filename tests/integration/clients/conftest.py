"""The clients are tested against the same real servers as the API and sender tests."""

from tests.integration.api.conftest import api
from tests.integration.sender.conftest import world

__all__ = ["api", "world"]
