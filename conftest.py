"""Every test in this repository runs with a private STASHFLOW_HOME."""

import pytest


@pytest.fixture(autouse=True)
def _private_stashflow_home(stashflow_home):
    return stashflow_home
