"""An oracle never signs an epoch it did not observe; after a restart it signs what it
saw before, with the coverage it really had (live deployment, real anvil).

Tests in this module run in order on one deployment.
"""

from __future__ import annotations

import pytest

from gpucap.attestation import dev_oracle_keys
from oracle.chain import ChainClient
from oracle.collectors.base import PolledSource, Reading, Sample, SampleStore
from oracle.proofs import read_proofs
from oracle.reporter import Reporter, ReportStatus
from oracle.state import ProgressStore
from tests.oracle.hub_helpers import end_epoch

pytestmark = pytest.mark.filterwarnings("ignore:rpc\\.(sleep|mine) should not:FutureWarning")

INTERVAL_S = 10.0
STEP_MJ = 356_860  # an idle L40S (35.686 W, tests/oracle/data/dcgm_l40s.txt) over 10 s


@pytest.fixture(scope="module")
def world(live_deployment, operator):
    """The live deployment with one registered 1-GPU L40S node (id 1)."""
    system = live_deployment.system
    system.registry.registerNode(
        system.class_ids["L40S-48GB"],
        1,
        b"eu-north".ljust(32, b"\0"),
        8_000 * 10**6,
        1_700_000_000,
        f"0x{0xB1:040x}",
        {"from": operator},
    )
    return live_deployment


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("oracle-state")


def start_oracle(world, state_dir) -> tuple[Reporter, SampleStore]:
    """What ``python -m oracle run`` assembles for a live source, from the same folder."""
    chain = ChainClient.connect(world.rpc_url, str(world.manifest_path))
    store = SampleStore(retention_s=10**9, path=state_dir / "samples.sqlite3")
    reporter = Reporter(
        chain,
        PolledSource(store, INTERVAL_S),
        dev_oracle_keys(),
        state_dir / "epochs",
        progress=ProgressStore(state_dir / "state.sqlite3", chain.chain_identity()),
    )
    return reporter, store


def test_an_epoch_it_was_not_watching_is_not_signed(world, state_dir, caplog):
    hub = world.system.oracle_hub
    epoch = end_epoch(hub)
    reporter, _ = start_oracle(world, state_dir)

    outcome = reporter.report_once()

    assert outcome.status is ReportStatus.NOT_OBSERVED and outcome.epoch == epoch
    assert hub.lastAttestedEpoch() == 0
    assert not (state_dir / "epochs" / f"{epoch}.json").exists()
    assert f"epoch {epoch}: this oracle was not sampling during it" in caplog.text


def test_after_a_restart_it_signs_what_it_saw_with_the_coverage_it_had(world, state_dir):
    hub = world.system.oracle_hub
    epoch = hub.currentEpoch() - 1
    reporter, store = start_oracle(world, state_dir)
    window = reporter.chain.epoch_window(epoch)
    # The previous run sampled the second half of the epoch (and one poll past its end).
    for k in range(4):
        t = window.start + 30 + INTERVAL_S * k
        store.add(
            [Reading(1, "gpu0", Sample(t, 40.0, 35.686, 5_551_899_580 + k * STEP_MJ, True))],
            polled_at=t,
        )
    # ...and was killed: nothing closed. A new process reads the folder back.
    restarted, _ = start_oracle(world, state_dir)

    outcome = restarted.report_once()

    assert outcome.status is ReportStatus.ATTESTED and outcome.epoch == epoch
    assert hub.lastAttestedEpoch() == epoch
    (leaf,) = read_proofs(state_dir / "epochs", epoch)["leaves"]
    # Held 30 s (samples at +30, +40, +50 s) of a 60 s epoch; 40 % busy while seen;
    # counter 3 × 356.86 J = 1070.58 J (whole joules: 1070; it was 0 whole Wh in leaf v1)
    # over the 30 s it covers; floor(30 × 1000 / 3600) mGPUh.
    assert leaf["sampleCoverageBps"] == 5_000
    assert leaf["uptimeBps"] == 10_000
    assert leaf["utilizationBps"] == 4_000
    assert (leaf["energyJoules"], leaf["energyCoverageBps"]) == (1_070, 5_000)
    assert leaf["utilizationCoverageBps"] == 5_000
    # Nothing attested before: the cumulative counters are this epoch's figures.
    assert (leaf["cumMilliGpuHours"], leaf["cumEnergyJoules"]) == (8, 1_070)
    assert leaf["cumBusyGpuSeconds"] == 12  # 30 s × 40 %
    assert leaf["milliGpuHours"] == 8


def _counter_mj(t: float) -> int:
    """Node 1's energy counter at ``t``, continuing the test above at the same 35.686 W."""
    return 5_551_899_580 + round((t - _counter_mj.t0) / INTERVAL_S * STEP_MJ)


def _fill(store: SampleStore, node: int, start: float, seconds: float, utilization=40.0) -> None:
    """One sample every INTERVAL_S over ``[start, start + seconds]`` (an idle-ish L40S)."""
    for k in range(int(seconds // INTERVAL_S) + 1):
        t = start + INTERVAL_S * k
        sample = Sample(t, utilization, 35.686, _counter_mj(t) + (node - 1) * 10**9, True)
        store.add([Reading(node, "gpu0", sample)], polled_at=t)


def _leaves(state_dir, epoch: int) -> dict[int, dict]:
    return {leaf["nodeId"]: leaf for leaf in read_proofs(state_dir / "epochs", epoch)["leaves"]}


CUMULATIVE = ("cumMilliGpuHours", "cumEnergyJoules", "cumBusyGpuSeconds")


def test_cumulative_counters_chain_across_a_missed_epoch_and_a_restart(
    world, state_dir, operator, caplog
):
    """cum* = the node's newest ATTESTED leaf before the epoch + this epoch's figures:
    across an epoch where node 1 had no leaf (excluded), across a restart (a new process
    re-reads the verified files), and never from a file the chain does not vouch for."""
    hub, registry = world.system.oracle_hub, world.system.registry
    registry.registerNode(
        world.system.class_ids["L40S-48GB"],
        1,
        b"eu-north".ljust(32, b"\0"),
        8_000 * 10**6,
        1_700_000_000,
        f"0x{0xB2:040x}",
        {"from": operator},
    )
    first = hub.lastAttestedEpoch()
    before = _leaves(state_dir, first)[1]
    reporter, store = start_oracle(world, state_dir)
    _counter_mj.t0 = reporter.chain.epoch_window(first).start + 30

    # Epoch first+1: node 1's first 20 s say 150 % busy (nonsense: excluded, no leaf).
    missed = end_epoch(hub)
    assert missed == first + 1
    window = reporter.chain.epoch_window(missed)
    _fill(store, 1, window.start, 20, utilization=150.0)
    _fill(store, 1, window.start + 30, 30)
    _fill(store, 2, window.start, 60)
    assert reporter.report_once().status is ReportStatus.ATTESTED
    leaves = _leaves(state_dir, missed)
    assert set(leaves) == {2}
    # Node 2's first leaf: nothing attested before it, so cum = this epoch's figures.
    assert leaves[2]["cumMilliGpuHours"] == leaves[2]["milliGpuHours"] == 16
    assert leaves[2]["cumEnergyJoules"] == leaves[2]["energyJoules"] > 0
    assert leaves[2]["cumBusyGpuSeconds"] == 24  # 1 GPU × 60 s × 40 %
    node2 = leaves[2]

    # Epoch first+2, signed by a NEW process (a restart) reading the same folder.
    after = end_epoch(hub)
    window = reporter.chain.epoch_window(after)
    restarted, store = start_oracle(world, state_dir)
    _fill(store, 1, window.start, 60)
    _fill(store, 2, window.start, 60)
    assert restarted.report_once().status is ReportStatus.ATTESTED
    leaves = _leaves(state_dir, after)
    one, two = leaves[1], leaves[2]
    assert (one["milliGpuHours"], one["energyCoverageBps"]) == (16, 10_000)
    # Node 1 builds on its leaf of `first` (it had none in `missed`).
    assert one["cumMilliGpuHours"] == before["cumMilliGpuHours"] + one["milliGpuHours"]
    assert one["cumEnergyJoules"] == before["cumEnergyJoules"] + one["energyJoules"]
    assert one["cumBusyGpuSeconds"] == before["cumBusyGpuSeconds"] + 24
    assert two["cumMilliGpuHours"] == node2["cumMilliGpuHours"] + two["milliGpuHours"]
    assert two["cumEnergyJoules"] == node2["cumEnergyJoules"] + two["energyJoules"]
    assert two["cumBusyGpuSeconds"] == node2["cumBusyGpuSeconds"] + 24

    # A process whose folder lost an attested epoch's file cannot prove the base:
    # it abstains (no unattested local state is used), and signs once the file is back.
    latest = end_epoch(hub)
    window = reporter.chain.epoch_window(latest)
    _fill(store, 1, window.start, 60)
    _fill(store, 2, window.start, 60)
    kept = state_dir / "epochs" / f"{missed}.json"
    aside = kept.with_suffix(".aside")
    kept.rename(aside)
    blind, _ = start_oracle(world, state_dir)
    assert blind.report_once().status is ReportStatus.NO_BASE
    assert f"epoch {latest}: cannot prove the cumulative counters' base" in caplog.text
    assert hub.lastAttestedEpoch() == after
    aside.rename(kept)
    assert blind.report_once().status is ReportStatus.ATTESTED
    final = _leaves(state_dir, latest)
    for field in CUMULATIVE:
        assert final[2][field] > two[field]
    assert final[1]["cumMilliGpuHours"] == one["cumMilliGpuHours"] + final[1]["milliGpuHours"]


def test_an_epoch_no_oracle_watched_is_passed_over_not_waited_on_forever(world, state_dir, caplog):
    """Every oracle was down for a whole epoch: none may sign it, and epochs are attested
    in order, so waiting on it would stop attestation for good. The oracle signs the first
    later epoch it watched; the unwatched one stays unattested, and the counters chain on
    the newest attested leaf."""
    hub = world.system.oracle_hub
    reporter, store = start_oracle(world, state_dir)
    # The epoch after the last one filled is watched for a moment (the last sample holds
    # past its end); the next one nobody sampled.
    held = end_epoch(hub)
    unwatched = end_epoch(hub)
    watched = end_epoch(hub)
    window = reporter.chain.epoch_window(watched)
    _fill(store, 1, window.start, 60)
    _fill(store, 2, window.start, 60)
    assert (reporter.report_once().epoch, hub.lastAttestedEpoch()) == (held, held)
    before = _leaves(state_dir, held)[2]

    outcome = reporter.report_once()

    assert (outcome.status, outcome.epoch) == (ReportStatus.ATTESTED, watched)
    assert hub.lastAttestedEpoch() == watched
    assert int(hub.epochAttestation(unwatched)[0].hex(), 16) == 0  # passed over
    assert f"signing epoch {watched}, the first ended one it watched" in caplog.text
    leaf = _leaves(state_dir, watched)[2]
    assert leaf["cumMilliGpuHours"] == before["cumMilliGpuHours"] + leaf["milliGpuHours"]
