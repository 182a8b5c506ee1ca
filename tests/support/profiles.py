"""Hypothesis test profiles: ``ci`` (the default) and ``slow`` (``make test-slow``).

Why two: the project must run its stateful machines for at least 1,000 examples
on every CI run while the whole suite stays far below 20 minutes on two cores;
a release is worth a longer search. ``$GPUCAP_TEST_PROFILE`` picks the profile.

Two kinds of tests read it:
- ``@given`` property tests take the loaded hypothesis profile's ``max_examples``
  (they are many and each example is a transaction or two, so keep them few);
- stateful machines take ``stateful_settings(steps=...)``: ``stateful_examples``
  examples of up to ``steps × step_factor`` rules each.

Imported (for its effect) by ``tests/conftest.py``, before pytest configures the
brownie plugin, so brownie's ``-v``/``--failfast`` profiles still layer on top.
The profiles inherit from whatever profile is loaded at import time (brownie's
profile built from ``brownie-config.yaml``'s ``hypothesis:`` section, which
holds the example database location), and only override what they are for.
This module must stay free of brownie imports: a conftest imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, settings

PROFILE_ENV = "GPUCAP_TEST_PROFILE"
# Overrides the profile's stateful example count for one run (measuring, bisecting a failure).
STATEFUL_EXAMPLES_ENV = "GPUCAP_STATEFUL_EXAMPLES"
DEFAULT_PROFILE = "ci"


class UnknownProfile(ValueError):
    """``$GPUCAP_TEST_PROFILE`` names no profile (a typo must not silently run CI settings)."""


@dataclass(frozen=True)
class Profile:
    name: str
    property_examples: int  # max_examples of every @given test
    stateful_examples: int  # examples (fresh chain snapshots) per state machine
    step_factor: int  # multiplies each machine's own step count
    stateful_timeout_s: int  # pytest-timeout for one state machine test (0: none)

    @property
    def hypothesis_name(self) -> str:
        return f"gpucap-{self.name}"


PROFILES: dict[str, Profile] = {
    # One oracle-hub machine at 1,000 examples takes ~3 min here: 15 min is a hang, not load.
    "ci": Profile(
        "ci", property_examples=50, stateful_examples=1_000, step_factor=1, stateful_timeout_s=900
    ),
    "slow": Profile(
        "slow", property_examples=500, stateful_examples=10_000, step_factor=2, stateful_timeout_s=0
    ),
}

# Chain-backed examples take milliseconds, not microseconds: hypothesis' timing
# health checks would flag every one of them, and deadlines would flake on a busy box.
_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large]


def active_profile() -> Profile:
    """The profile ``$GPUCAP_TEST_PROFILE`` names (default ``ci``)."""
    name = os.environ.get(PROFILE_ENV, "").strip() or DEFAULT_PROFILE
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownProfile(
            f"{PROFILE_ENV}={name!r}: expected one of {', '.join(sorted(PROFILES))}"
        ) from None


def load() -> Profile:
    """Registers every profile with hypothesis and loads the active one."""
    parent = settings()  # the currently loaded profile (brownie's, under pytest)
    for profile in PROFILES.values():
        settings.register_profile(
            profile.hypothesis_name,
            parent=parent,
            max_examples=profile.property_examples,
            deadline=None,
            suppress_health_check=_SUPPRESSED,
            print_blob=True,  # a CI failure prints the line that replays it
        )
    profile = active_profile()
    settings.load_profile(profile.hypothesis_name)
    return profile


def stateful_settings(*, steps: int) -> settings:
    """Settings for one state machine whose interesting runs need about ``steps`` rules.

    Each example replays from a chain snapshot, so its cost is its step count:
    machines pick ``steps`` to keep the CI profile's 1,000 examples affordable.
    """
    if steps < 1:
        raise ValueError(f"a state machine needs at least one step, got {steps}")
    profile = active_profile()
    examples = profile.stateful_examples
    override = os.environ.get(STATEFUL_EXAMPLES_ENV, "").strip()
    if override:
        examples = int(override)
    parent = settings()  # inherit the loaded profile (database, verbosity, failfast phases)
    return settings(
        parent,
        max_examples=examples,
        # No target phase: its pareto-front optimisation replays examples (half a
        # machine's run time) to maximise observations no machine here records.
        phases=[phase for phase in parent.phases if phase is not Phase.target],
        stateful_step_count=steps * profile.step_factor,
        deadline=None,
        suppress_health_check=_SUPPRESSED,
    )


ACTIVE = load()
