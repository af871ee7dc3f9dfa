import pytest


@pytest.fixture(scope="session")
def tiny():
    from support import tiny_models

    tiny_models.register()
    return tiny_models
