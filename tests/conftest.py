"""Shared test configuration: Hypothesis profiles.

Example counts are set per test with ``memmesh.testing.scaled(n)``, which ``make soak`` multiplies
through ``MEMMESH_TEST_SCALE``; the ``soak`` profile only raises the default for tests that set
no count. Deadlines are off: these machines are
shared and noisy, and performance is measured in benchmarks, not in tests.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "soak", deadline=None, max_examples=20_000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
