"""The shared attestation encoding and the daemon's pure parts (no chain needed)."""

from __future__ import annotations

import json

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak
from pydantic import ValidationError
from typer.testing import CliRunner

from gpucap.attestation import (
    AttestationError,
    Cumulative,
    NodeLeaf,
    build_commitment,
    dev_oracle_keys,
    leaf_hash,
    report_digest,
    sign_report,
)
from gpucap.deployment import REPO_ROOT
from gpucap.merkle import MerkleTreeError, StandardMerkleTree, process_proof
from gpucap.revert import decode_revert
from oracle.__main__ import app as cli
from oracle.chain import HubState
from oracle.collectors.base import PolledSource
from oracle.collectors.dcgm import DcgmCollector
from oracle.collectors.simulated import SimulatedFleet
from oracle.config import OracleSettings
from oracle.errors import OracleConfigError
from oracle.reporter import Reporter
from oracle.sources import build_source
from tests.oracle.test_oracle_collectors import HAS_GPU

HUB = "0x" + "ab" * 20

# A dump written by OpenZeppelin's JavaScript StandardMerkleTree (@openzeppelin/merkle-tree):
# our tree must reproduce it node for node.
OZ_JS_DUMP = {
    "format": "standard-v1",
    "leafEncoding": ["address", "uint256"],
    "tree": [
        "0x0fecce441c7468f17e3fe4a5f211b77a15b27c9ab3d33317df385dfbe5487034",
        "0x636ab2686ee3036244cf3d6b5574e051e4b20a3577b008975dbcca6dde2897d2",
        "0xd90245da324d7908326a3d56a9659741551a4603c397bf4dd373976bd85660e7",
        "0x36fb17c97ec80bb961ff0adff1af4a2a34847ecc40653c162e327117a76e3ec9",
        "0x1867c4ebd455913e429523a5c2d4b3a79f58068b5a25af911956245ed03a659d",
    ],
    "values": [
        {"value": ["0x80d628ff4AC2aFf620C3474663F1e559234bbE0c", "0"], "treeIndex": 4},
        {"value": ["0x80d628ff4AC2aFf620C3474663F1e559234bbE0c", "1"], "treeIndex": 3},
        {"value": ["0x80d628ff4AC2aFf620C3474663F1e559234bbE0c", "2"], "treeIndex": 2},
    ],
}


def leaf(node_id: int = 1, epoch: int = 3, **changes: int) -> NodeLeaf:
    fields = dict(
        node_id=node_id,
        epoch=epoch,
        uptime_bps=9_900,
        utilization_bps=7_000,
        sample_coverage_bps=10_000,
        utilization_coverage_bps=10_000,
        energy_coverage_bps=10_000,
        challenges_passed=1,
        challenges_failed=0,
        energy_joules=288_000,
        milli_gpu_hours=130,
        cum_milli_gpu_hours=1_130,
        cum_energy_joules=2_288_000,
        cum_busy_gpu_seconds=5_000,
    )
    return NodeLeaf(**{**fields, **changes})


class TestMerkleTree:
    def test_matches_openzeppelin_js_dump(self):
        owner = "0x80d628ff4AC2aFf620C3474663F1e559234bbE0c"
        tree = StandardMerkleTree.of([[owner, i] for i in range(3)], ["address", "uint256"])
        assert tree.dump() == OZ_JS_DUMP

    @pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 9, 33])
    def test_every_proof_leads_to_the_root(self, size):
        tree = StandardMerkleTree.of([[i] for i in range(size)], ["uint256"])
        for i in range(size):
            assert tree.verify(i, tree.proof(i))
            assert process_proof(tree.leaf_hash(i), tree.proof(i)) == tree.root
        assert not tree.verify(0, tree.proof(size - 1)) or size == 1

    def test_single_leaf_root_is_its_hash(self):
        tree = StandardMerkleTree.of([[7]], ["uint256"])
        assert tree.root == keccak(keccak(encode(["uint256"], [7])))
        assert tree.proof(0) == []

    def test_empty_tree_and_missing_index_refused(self):
        with pytest.raises(MerkleTreeError):
            StandardMerkleTree.of([], ["uint256"])
        with pytest.raises(MerkleTreeError):
            StandardMerkleTree.of([[1]], ["uint256"]).proof(1)


class TestCommitment:
    def test_totals_and_order(self):
        c = build_commitment(
            3, [leaf(2, energy_joules=5), leaf(1, energy_joules=7)], config_version=4
        )
        assert [lf.node_id for lf in c.leaves] == [1, 2]
        assert (c.report.node_count, c.report.total_energy_joules) == (2, 12)
        assert c.report.total_milli_gpu_hours == 260
        assert c.report.config_version == 4
        assert c.tree.verify(0, c.proof(1))

    def test_root_does_not_depend_on_input_order(self):
        a = build_commitment(3, [leaf(1), leaf(2), leaf(3)], 1)
        b = build_commitment(3, [leaf(3), leaf(1), leaf(2)], 1)
        assert a.report.root == b.report.root

    @pytest.mark.parametrize(
        "leaves",
        [[], [leaf(1), leaf(1)], [leaf(1), leaf(2, epoch=4)]],
        ids=["empty", "dup", "epoch"],
    )
    def test_bad_leaf_sets_refused(self, leaves):
        with pytest.raises(AttestationError):
            build_commitment(3, leaves, 1)

    @pytest.mark.parametrize(
        "changes",
        [
            {"uptime_bps": 10_001},
            {"node_id": 0},
            {"epoch": 0},
            {"energy_joules": -1},
            {"utilization_coverage_bps": 10_001},
            {"energy_coverage_bps": 10_001},
            {"challenges_failed": 2**16},
            {"cum_busy_gpu_seconds": 2**64},
            {"cum_milli_gpu_hours": 129},  # below the epoch's own figure
            {"cum_energy_joules": 287_999},
            {"energy_coverage_bps": 0},  # joules without coverage: an invented figure
        ],
    )
    def test_leaf_ranges(self, changes):
        with pytest.raises(AttestationError):
            leaf(**changes)

    def test_leaf_hash_is_the_standard_double_hash(self):
        lf = leaf(1)
        types = ["uint256", "uint64", *["uint16"] * 7, *["uint64"] * 5]
        assert leaf_hash(lf) == keccak(keccak(encode(types, list(lf.values()))))

    def test_json_round_trip_and_derived_energy_wh(self):
        lf = leaf(1)
        assert NodeLeaf.from_json(lf.to_json()) == lf
        assert NodeLeaf.from_values(lf.values()) == lf
        assert lf.to_json()["cumBusyGpuSeconds"] == 5_000
        assert lf.energy_wh == 80 and lf.energy_known
        unknown = leaf(1, energy_joules=0, energy_coverage_bps=0, cum_energy_joules=0)
        assert not unknown.energy_known
        with pytest.raises(AttestationError):
            NodeLeaf.from_values(lf.values()[:7])  # a v1 row is refused, not misread

    def test_cumulative_counters_chain_on_the_base(self):
        first = NodeLeaf.measured(
            1,
            3,
            uptime_bps=10_000,
            utilization_bps=5_000,
            sample_coverage_bps=10_000,
            utilization_coverage_bps=10_000,
            energy_coverage_bps=10_000,
            energy_joules=100,
            milli_gpu_hours=10,
            busy_gpu_seconds=18,
        )
        second = NodeLeaf.measured(
            1,
            5,
            uptime_bps=10_000,
            utilization_bps=5_000,
            sample_coverage_bps=10_000,
            utilization_coverage_bps=10_000,
            energy_coverage_bps=0,
            energy_joules=0,
            milli_gpu_hours=7,
            busy_gpu_seconds=12,
            base=Cumulative.of(first),
        )
        assert (second.cum_milli_gpu_hours, second.cum_energy_joules) == (17, 100)
        assert second.cum_busy_gpu_seconds == 30

    def test_missing_node_proof_refused(self):
        with pytest.raises(AttestationError):
            build_commitment(3, [leaf(1)], 1).proof(2)


class TestSigning:
    def test_signatures_sorted_and_recoverable(self):
        report = build_commitment(3, [leaf(1)], 1).report
        signed = sign_report(report, dev_oracle_keys(), 31337, HUB)
        signers = [s.signer for s in signed]
        assert signers == sorted(signers, key=lambda a: int(a, 16))
        digest = report_digest(report, 31337, HUB)
        for s in signed:
            assert Account._recover_hash(digest, signature=s.signature) == s.signer

    def test_digest_binds_chain_and_contract(self):
        report = build_commitment(3, [leaf(1)], 1).report
        base = report_digest(report, 31337, HUB)
        assert report_digest(report, 1, HUB) != base
        assert report_digest(report, 31337, "0x" + "cd" * 20) != base

    def test_same_key_twice_refused(self):
        report = build_commitment(3, [leaf(1)], 1).report
        key = dev_oracle_keys()[0]
        with pytest.raises(AttestationError):
            sign_report(report, [key, key], 31337, HUB)


class TestRevertDecoding:
    @pytest.fixture
    def abi(self):
        return json.loads((REPO_ROOT / "build/contracts/OracleHub.json").read_text())["abi"]

    def test_custom_error_with_args(self, abi):
        data = keccak(text="OracleEpochAlreadyAttested(uint64,uint64)")[:4] + encode(
            ["uint64", "uint64"], [7, 9]
        )
        decoded = decode_revert(abi, "0x" + data.hex())
        assert decoded is not None
        assert (decoded.name, decoded.args) == (
            "OracleEpochAlreadyAttested",
            {"epoch": 7, "attestedAt": 9},
        )
        assert str(decoded) == "OracleEpochAlreadyAttested(epoch=7, attestedAt=9)"

    def test_unknown_or_empty_data(self, abi):
        assert decode_revert(abi, "0xdeadbeef") is None
        assert decode_revert(abi, "0x") is None
        assert decode_revert(abi, None) is None


class TestNextEpoch:
    @pytest.mark.parametrize(
        "last,current,expected",
        [(0, 0, None), (0, 1, None), (0, 2, 1), (0, 9, 8), (3, 5, 4), (4, 5, None), (4, 9, 5)],
    )
    def test_next_epoch(self, last, current, expected):
        state = HubState(
            last_attested_epoch=last, current_epoch=current, config_version=1, quorum=2
        )
        assert Reporter.next_epoch(state) == expected


class TestSettings:
    def test_development_defaults_to_dev_oracle_keys(self, monkeypatch):
        monkeypatch.delenv("GPUCAP_ORACLE_KEYS", raising=False)
        monkeypatch.setenv("GPUCAP_ORACLE_ENVIRONMENT", "development")
        assert OracleSettings().private_keys() == dev_oracle_keys()

    def test_production_requires_a_keystore(self, monkeypatch):
        monkeypatch.delenv("GPUCAP_ORACLE_KEYS", raising=False)
        monkeypatch.setenv("GPUCAP_ENVIRONMENT", "production")
        with pytest.raises(ValidationError, match="KEYSTORE_PATH is required in production"):
            OracleSettings()

    def test_production_refuses_plain_keys(self, monkeypatch):
        monkeypatch.setenv("GPUCAP_ORACLE_ENVIRONMENT", "production")
        monkeypatch.setenv("GPUCAP_ORACLE_KEYS", "0x" + "11" * 32)
        with pytest.raises(ValidationError, match="plain private keys .* are refused"):
            OracleSettings()

    def test_development_keys_parsed(self, monkeypatch):
        keys = ["0x" + "11" * 32, "0x" + "22" * 32]
        monkeypatch.setenv("GPUCAP_ORACLE_ENVIRONMENT", "development")
        monkeypatch.setenv("GPUCAP_ORACLE_KEYS", " , ".join(keys))
        settings = OracleSettings()
        assert settings.private_keys() == keys
        assert keys[0] not in repr(settings)  # secrets stay out of logs

    def test_malformed_key_refused(self, monkeypatch):
        monkeypatch.setenv("GPUCAP_ORACLE_KEYS", "0x1234")
        with pytest.raises(OracleConfigError):
            OracleSettings().private_keys()


class TestKeystore:
    KEY = "0x" + "5a" * 32

    @pytest.fixture
    def keystore(self, tmp_path):
        path = tmp_path / "oracle.json"
        path.write_text(json.dumps(Account.encrypt(self.KEY, "s3cret pass", iterations=2)))
        password = tmp_path / "password"
        password.write_text("s3cret pass\n")
        return path, password

    def test_production_signs_with_the_decrypted_keystore(self, monkeypatch, keystore):
        path, password = keystore
        monkeypatch.setenv("GPUCAP_ORACLE_ENVIRONMENT", "production")
        monkeypatch.setenv("GPUCAP_ORACLE_KEYSTORE_PATH", str(path))
        monkeypatch.setenv("GPUCAP_ORACLE_KEYSTORE_PASSWORD_FILE", str(password))
        monkeypatch.delenv("GPUCAP_ORACLE_KEYS", raising=False)
        assert OracleSettings().private_keys() == [self.KEY]

    def test_password_from_env(self, keystore):
        path, _ = keystore
        settings = OracleSettings(keystore_path=path, keystore_password="s3cret pass")
        assert settings.private_keys() == [self.KEY]
        assert "s3cret" not in repr(settings)

    def test_wrong_password_is_a_clear_error(self, keystore):
        path, _ = keystore
        settings = OracleSettings(keystore_path=path, keystore_password="nope")
        with pytest.raises(OracleConfigError, match="wrong password or damaged file"):
            settings.private_keys()

    def test_missing_file_and_missing_password(self, tmp_path, keystore):
        settings = OracleSettings(keystore_path=tmp_path / "none.json", keystore_password="x")
        with pytest.raises(OracleConfigError, match="cannot read keystore"):
            settings.private_keys()
        with pytest.raises(ValidationError, match="needs GPUCAP_ORACLE_KEYSTORE_PASSWORD_FILE"):
            OracleSettings(keystore_path=keystore[0])

    def test_keystore_and_plain_keys_together_refused(self, keystore):
        with pytest.raises(ValidationError, match="not both"):
            OracleSettings(keystore_path=keystore[0], keystore_password="x", keys="0x" + "11" * 32)

    def test_dev_key_in_a_production_keystore_refused(self, tmp_path, monkeypatch):
        path = tmp_path / "dev.json"
        path.write_text(json.dumps(Account.encrypt(dev_oracle_keys()[0], "pw", iterations=2)))
        monkeypatch.setenv("GPUCAP_ORACLE_ENVIRONMENT", "production")
        settings = OracleSettings(keystore_path=path, keystore_password="pw")
        with pytest.raises(OracleConfigError, match="refused outside development"):
            settings.private_keys()

    def test_cli_creates_a_keystore_the_daemon_can_open(self, tmp_path):
        password = tmp_path / "pw"
        password.write_text("correct horse\n")
        out = tmp_path / "ks.json"
        result = CliRunner().invoke(
            cli, ["new-keystore", str(out), "--password-file", str(password), "--iterations", "2"]
        )
        assert result.exit_code == 0, result.output
        key = OracleSettings(keystore_path=out, keystore_password_file=password).private_keys()[0]
        assert Account.from_key(key).address in result.output
        assert oct(out.stat().st_mode & 0o777) == "0o600"
        again = CliRunner().invoke(
            cli, ["new-keystore", str(out), "--password-file", str(password)]
        )
        assert again.exit_code != 0 and "already exists" in again.output


class TestSourceWiring:
    def test_simulated_needs_no_sampler(self):
        source, sampler = build_source(OracleSettings())
        assert isinstance(source, SimulatedFleet) and sampler is None

    def test_dcgm_gets_a_polled_source_and_a_sampler(self, tmp_path):
        settings = OracleSettings(
            source="dcgm",
            dcgm_targets="3=http://127.0.0.1:9/metrics",
            sample_interval_seconds=7,
            state_path=tmp_path / "state.sqlite3",
        )
        source, sampler = build_source(settings)
        assert isinstance(source, PolledSource) and source.interval_s == 7
        assert isinstance(sampler.collector, DcgmCollector)
        assert sampler.collector.targets == {3: "http://127.0.0.1:9/metrics"}
        assert sampler.collector.deadline_s == 5.0  # one deadline per poll, inside 7 s
        # what it samples is kept beside the write-ahead state, for after a restart
        assert (tmp_path / "samples.sqlite3").exists()

    def test_nvml_requires_a_node_id(self):
        with pytest.raises(ValidationError, match="NVML_NODE_ID is required"):
            OracleSettings(source="nvml")

    @pytest.mark.skipif(HAS_GPU, reason="this host has an NVIDIA GPU")
    def test_cli_without_gpu_exits_with_a_clear_message(self, monkeypatch, caplog):
        monkeypatch.setenv("GPUCAP_ORACLE_SOURCE", "nvml")
        monkeypatch.setenv("GPUCAP_ORACLE_NVML_NODE_ID", "1")
        result = CliRunner().invoke(cli, ["run", "--once"])
        assert result.exit_code == 2
        assert "cannot start: no NVIDIA driver/GPU on this host" in caplog.text


def test_a_state_file_from_before_orphaned_attempts_is_upgraded_in_place(tmp_path):
    """A state file whose attempts table predates the 'orphaned' status keeps its rows and
    accepts the new status (a reorg's orphaned attempt) after the upgrade."""
    import sqlite3

    from oracle.chain import SignedAttestation
    from oracle.state import ProgressStore

    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE attempts (chain TEXT NOT NULL, epoch INTEGER NOT NULL,"
            " tx_hash TEXT NOT NULL, raw_tx BLOB NOT NULL, nonce INTEGER NOT NULL,"
            " root TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN"
            " ('sent', 'confirmed', 'reverted', 'retired')), created_at REAL NOT NULL,"
            " updated_at REAL NOT NULL, PRIMARY KEY (chain, tx_hash))"
        )
        db.execute(
            "INSERT INTO attempts VALUES ('c', 7, '0xaa', x'01', 3, '0x00', 'confirmed', 1, 1)"
        )
    store = ProgressStore(path, "c")
    assert store.statuses(7) == ["confirmed"]
    store.orphan_confirmed(7)
    assert store.statuses(7) == ["orphaned"]
    # The same transaction sent again (rebuilt byte for byte after a reorg) is in flight.
    store.record_sent(SignedAttestation(7, "0xaa", b"\x01", 3), bytes(32))
    assert store.statuses(7) == ["sent"]
    store.close()
