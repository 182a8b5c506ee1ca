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
    # counter 3 × 356.86 J = 1070.58 J → 0 whole Wh; floor(30 × 1000 / 3600) mGPUh.
    assert leaf["sampleCoverageBps"] == 5_000
    assert leaf["uptimeBps"] == 10_000
    assert leaf["utilizationBps"] == 4_000
    assert leaf["energyWh"] == 0
    assert leaf["milliGpuHours"] == 8
