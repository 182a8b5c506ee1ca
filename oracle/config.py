"""Oracle daemon settings, from ``GPUCAP_ORACLE_*`` environment variables.

Keys. In production an oracle signs with ONE key read from an encrypted
eth-account (Web3 Secret Storage v3) keystore file,
``GPUCAP_ORACLE_KEYSTORE_PATH``, whose password comes from
``GPUCAP_ORACLE_KEYSTORE_PASSWORD`` or, better (it stays out of the process
environment), from the file named by ``GPUCAP_ORACLE_KEYSTORE_PASSWORD_FILE``.
Plain private keys in configuration (``GPUCAP_ORACLE_KEYS``) are refused in
production, as are anvil's well-known dev keys inside a keystore (gpucap/keystore.py).

In development a keystore works the same way; without one, ``GPUCAP_ORACLE_KEYS``
(comma-separated 0x keys) may be used, and when that is unset too the daemon
holds ALL THREE dev oracle keys (anvil accounts 6, 7, 8) so that one process
reaches the dev chain's 2-of-3 quorum alone: a dev-chain shortcut only. The
first key also pays gas (the transmitter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from eth_account import Account
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gpucap import keystore
from gpucap.attestation import dev_oracle_keys
from oracle.errors import OracleConfigError


class OracleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GPUCAP_ORACLE_", extra="ignore")

    # Shared with the rest of gpucap: GPUCAP_ENVIRONMENT is honoured too.
    environment: Literal["development", "production"] = Field(
        default="development",
        validation_alias=AliasChoices("GPUCAP_ORACLE_ENVIRONMENT", "GPUCAP_ENVIRONMENT"),
    )
    rpc_url: str = "http://127.0.0.1:8545"
    # A node that does not answer a request in this long (stalled, not refusing) fails
    # the step, which is retried with backoff.
    rpc_timeout_seconds: float = Field(default=30.0, gt=0)
    manifest_path: Path = Path("deployments/development.json")
    keys: SecretStr | None = None
    keystore_path: Path | None = None
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    proofs_dir: Path = Path(".run/oracle/epochs")
    # The other oracles' published folders (JSON list): where the cumulative counters'
    # base is looked for when this folder lacks an attested epoch (a new or restarted
    # oracle); every file is checked against the on-chain root (oracle/cumulative.py).
    peer_proofs_dirs: list[Path] = Field(default_factory=list)
    # Crash-safe progress (SQLite): what was sent and confirmed (oracle/state.py).
    state_path: Path = Path(".run/oracle/state.sqlite3")
    # Where telemetry comes from: a simulated fleet, dcgm-exporter targets, or local NVML.
    source: Literal["simulated", "dcgm", "nvml", "agent"] = "simulated"
    fleet_seed: int = 0
    fleet_samples_per_epoch: int = Field(default=12, ge=2)
    # Length of the simulated fleet's day (its utilization cycle); a demo shortens it.
    fleet_day_seconds: int = Field(default=86_400, gt=0)
    # dcgm: "1=http://10.0.0.5:9400/metrics,2=http://10.0.0.6:9400/metrics" (node id = URL)
    dcgm_targets: str = ""
    # nvml: the registry id of the node this oracle runs on
    nvml_node_id: int | None = Field(default=None, ge=1)
    # agent: "1=http://10.0.0.5:9500,2=…" (node id = the node agent's base URL)
    agent_targets: str = ""
    # agent: a sample stamped further than this from the oracle's clock is stale (missing).
    agent_max_skew_seconds: float = Field(default=5.0, gt=0)
    # agent: challenges (oracle/challenges.py); mean seconds between two per node, 0 = none.
    challenge_mean_interval_seconds: float = Field(default=3600.0, ge=0)
    challenge_rows: int = Field(default=4, ge=1, le=64)
    challenge_target_seconds: float = Field(default=0.02, gt=0)
    challenge_min_efficiency: float = Field(default=0.2, gt=0, le=1)
    challenge_prepare_seconds: float = Field(default=120.0, gt=0)
    challenge_overhead_seconds: float = Field(default=10.0, ge=0)
    challenge_kernel_slack_seconds: float = Field(default=0.01, ge=0)
    # dcgm/nvml/agent: seconds between two scrapes (gaps are judged against it)
    sample_interval_seconds: float = Field(default=10.0, gt=0)
    # Upper bound between two looks at the chain; the daemon also wakes at each epoch end.
    poll_interval_seconds: float = Field(default=5.0, gt=0)
    receipt_timeout_seconds: float = Field(default=120.0, gt=0)
    # An attestation still pending this long after it was sent is re-signed at the same
    # nonce with fees raised by fee_bump_percent (nodes require at least +10%).
    replace_after_seconds: float = Field(default=60.0, ge=0)
    fee_bump_percent: int = Field(default=25, ge=10, le=500)
    # Attestations mined this many blocks back are still checked for a reorg each step
    # (a deeper reorg that lowers lastAttestedEpoch() is caught regardless).
    reorg_window_blocks: int = Field(default=64, ge=1)
    # M-of-N across processes: each holds one key; signatures meet in this Redis.
    quorum_redis_url: str | None = None
    # A board read or write stalled this long fails the step (retried), never the daemon.
    quorum_redis_timeout_seconds: float = Field(default=10.0, gt=0)
    # Rank k of the rotation transmits k × this many seconds after seeing a quorum.
    transmit_fallback_seconds: float = Field(default=30.0, ge=0)
    # Co-sign another oracle's leaf if within these of our own (see oracle.quorum.Tolerance).
    quorum_tolerance_ratio_bps: int = Field(default=100, ge=0, le=10_000)
    quorum_tolerance_relative_bps: int = Field(default=100, ge=0, le=10_000)
    # Quorum mode: attested epochs this far back with no proofs file here are rebuilt from
    # the board, checked against the on-chain root (oracle/recovery.py); 0 = never.
    proofs_recovery_epochs: int = Field(default=64, ge=0)
    # Health (/health) and Prometheus (/metrics) endpoint; unset = not served.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65_535)
    # /health turns 503 after this long without a successful step, or this many unattested epochs.
    health_max_silence_seconds: float = Field(default=120.0, gt=0)
    health_max_lag_epochs: int = Field(default=2, ge=0)
    # Pause after a failed tick before trying again (rejections are not retried in a tight loop).
    retry_delay_seconds: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _keys_fit_environment(self) -> OracleSettings:
        if self.keystore_path is not None:
            if self.keystore_password is None and self.keystore_password_file is None:
                raise ValueError(
                    "GPUCAP_ORACLE_KEYSTORE_PATH needs GPUCAP_ORACLE_KEYSTORE_PASSWORD_FILE"
                    " (or GPUCAP_ORACLE_KEYSTORE_PASSWORD)"
                )
            if self.keys is not None and self.keys.get_secret_value().strip():
                raise ValueError("set either a keystore or GPUCAP_ORACLE_KEYS, not both")
        if self.environment == "development":
            return self
        if self.keys is not None and self.keys.get_secret_value().strip():
            raise ValueError(
                "plain private keys (GPUCAP_ORACLE_KEYS) are refused in production:"
                " use an encrypted keystore (GPUCAP_ORACLE_KEYSTORE_PATH)"
            )
        if self.keystore_path is None:
            raise ValueError("GPUCAP_ORACLE_KEYSTORE_PATH is required in production")
        return self

    @model_validator(mode="after")
    def _source_is_complete(self) -> OracleSettings:
        if self.source == "dcgm":
            self.dcgm_target_map()  # raises on a malformed list
        if self.source == "agent":
            self.agent_target_map()
        if self.source == "nvml" and self.nvml_node_id is None:
            raise ValueError("GPUCAP_ORACLE_NVML_NODE_ID is required with source=nvml")
        return self

    def dcgm_target_map(self) -> dict[int, str]:
        return _target_map(self.dcgm_targets, "DCGM_TARGETS", "dcgm")

    def agent_target_map(self) -> dict[int, str]:
        return _target_map(self.agent_targets, "AGENT_TARGETS", "agent")

    def private_keys(self) -> list[str]:
        """The oracle keys this daemon signs with.

        Raises OracleConfigError for an unreadable keystore, a wrong password, a
        malformed key, or a dev key outside development.
        """
        if self.keystore_path is not None:
            keys = [self._decrypt_keystore()]
        elif self.keys is None or not self.keys.get_secret_value().strip():
            return dev_oracle_keys()
        else:
            keys = _split(self.keys.get_secret_value())
        for key in keys:
            try:
                Account.from_key(key)
            except ValueError as exc:
                raise OracleConfigError("GPUCAP_ORACLE_KEYS holds a malformed private key") from exc
        if self.environment != "development":
            for key in keys:
                try:
                    keystore.refuse_dev_key(key, "an oracle key")
                except keystore.KeystoreError as exc:
                    raise OracleConfigError(str(exc)) from None
        return keys

    def _decrypt_keystore(self) -> str:
        assert self.keystore_path is not None
        try:
            password = keystore.read_password(
                password=(
                    self.keystore_password.get_secret_value() if self.keystore_password else None
                ),
                password_file=self.keystore_password_file,
                needed_by="GPUCAP_ORACLE_KEYSTORE_PATH",
            )
            return keystore.decrypt(self.keystore_path, password)
        except keystore.KeystoreError as exc:
            raise OracleConfigError(str(exc)) from exc


def _target_map(raw: str, name: str, source: str) -> dict[int, str]:
    """``"1=http://…,2=http://…"`` as {node id: URL}; raises ValueError if malformed or empty."""
    targets: dict[int, str] = {}
    for part in _split(raw):
        node, sep, url = part.partition("=")
        if not sep or not node.strip().isdigit() or not url.strip().startswith("http"):
            raise ValueError(f"GPUCAP_ORACLE_{name} entry {part!r} is not node_id=http…")
        targets[int(node)] = url.strip()
    if not targets:
        raise ValueError(f"GPUCAP_ORACLE_{name} is required with source={source}")
    return targets


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]
