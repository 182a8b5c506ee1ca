"""One settings object for the API, the worker and the CLI (env prefix ``GPUCAP_``).

Development works with no configuration at all (SQLite under ``.run/``, an
embedded Redis, anvil's account 9 as the relayer); production refuses to start
with a missing or placeholder secret, or one of anvil's well-known dev keys, instead
of failing later, mid-request.

The relayer's key: a plain key (``GPUCAP_RELAYER_KEY``, or anvil's account 9 by default)
only on a development chain (development settings and a manifest of anvil's chain id);
anywhere else an encrypted keystore with its password from a file, what ``python -m
devnet serve`` gives it, and never one of the dev keys.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.services.rpc_endpoints import parse_urls
from gpucap import devchain, keystore
from gpucap.deployment import Deployment, ManifestError

REPO_ROOT = devchain.REPO_ROOT
RELAYER_DEV_ACCOUNT = 9  # tests/conftest.py's `relayer` role
KEYSTORE_ONLY = (
    "outside a development chain the relayer's key comes from an encrypted keystore only: "
    "GPUCAP_RELAYER_KEYSTORE_PATH with GPUCAP_RELAYER_KEYSTORE_PASSWORD_FILE (what "
    "`python -m devnet serve` passes)"
)
# Values that mean "nobody set this": accepted in development only.
PLACEHOLDER_SECRETS = frozenset({"", "changethis", "change-me", "changeme", "0x", "placeholder"})


class ConfigError(ValueError):
    """The settings cannot be used in this environment; the message says which and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GPUCAP_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    run_dir: Path = REPO_ROOT / ".run"
    database_url: str = ""  # empty: SQLite file <run_dir>/gpucap.db
    redis_url: str | None = None  # None: the embedded Redis under <run_dir>/redis
    embedded_redis_port: int = 6398
    rpc_url: str = "http://127.0.0.1:8545"
    # Several nodes of the same chain, comma-separated: the first is used until a request
    # to it fails in transport (refused, timed out), then the next (logged). Empty:
    # rpc_url alone.
    rpc_urls: str = ""
    rpc_timeout_seconds: float = 3.0
    manifest_path: Path = REPO_ROOT / "deployments" / "development.json"
    # The relayer's key: an encrypted eth-account keystore (the password from a file keeps
    # it out of the environment), or, on a development chain only, the plain key in
    # relayer_key (default: anvil's account 9). Anvil's well-known dev keys are refused
    # anywhere else, plain or encrypted.
    relayer_key: SecretStr | None = None
    relayer_keystore_path: Path | None = None
    relayer_keystore_password: SecretStr | None = None
    relayer_keystore_password_file: Path | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # API processes (uvicorn workers) sharing the port. Each keeps its own read cache
    # and connection pool; everything they share (sessions, SIWE nonces, actions) is in
    # the database. One per core is the usual production choice.
    api_workers: int = Field(default=1, ge=1, le=64)
    # One log line per request. Off where a proxy in front logs requests already: at
    # thousands of reads a second the line costs more than a cached answer does.
    api_access_log: bool = True
    # Reverse proxies in front of the API (addresses or CIDRs, a JSON list). Only a
    # connection from one of them has its X-Forwarded-For believed, and then the
    # rightmost address that is not itself a trusted proxy is the client (what the
    # faucet's per-client limit counts). Empty (default): the header is ignored and the
    # client is the connecting address, so nobody can name themselves someone else.
    trusted_proxies: list[str] = Field(default_factory=list)

    # Worker threads. Most of a relay task's time is waiting (a batch being mined, the
    # node's answers): with 2, two batches in flight left no thread for the rest of the
    # queue, and the next batch waited for a receipt. One relayer key still sends one
    # transaction at a time (its nonce lock), whatever this is.
    worker_threads: int = Field(default=8, ge=1, le=64)
    # The worker's Prometheus /metrics (monitoring/worker.py): off when unset. Each worker
    # process on a host needs its own port. The API serves /metrics on its own port.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    # Relaying
    receipt_timeout_seconds: float = 30.0
    # A transaction still pending this long after it was sent is re-signed with the
    # same nonce and fees raised by fee_bump_percent (nodes require >= 10%).
    replace_after_seconds: float = 60.0
    fee_bump_percent: int = 25
    nonce_lock_seconds: float = 30.0
    # The worker's locks (the nonce lock, a transaction's wait, the indexer's and
    # keepers' runs) are leases renewed while held: a killed worker's locks are free
    # this long after it died (services/claims.py).
    lease_seconds: float = Field(default=10.0, ge=1.0, le=300.0)
    # Forward requests go out many per executeBatch transaction: at most this many,
    # and at most this much gas (never more than the latest block's gas limit).
    forward_batch_max_requests: int = Field(default=100, ge=1)
    forward_batch_max_gas: int = Field(default=15_000_000, ge=100_000)
    # ... and sized so that this many batches fill a block (services/relaying/batch_sizing.py fit).
    forward_batches_per_block: int = Field(default=4, ge=1, le=64)
    # How long the first forward request of a burst waits for others to share its
    # batch (one relay task per burst, not per request: services/relaying/relay_kick.py).
    forward_batch_window_seconds: float = Field(default=0.2, ge=0, le=10)
    # The sweep re-enqueues pending/submitted rows idle for longer than this.
    # Keep it above the relay task's retry_backoff_max (worker/tasks.py).
    sweep_interval_seconds: float = 30.0
    sweep_stale_seconds: float = 60.0

    # Chain indexer (a beat task): how often it runs, and how many blocks it trails the
    # head by (0 on anvil, which never reorgs by itself; more on a real network).
    index_interval_seconds: float = 2.0
    index_confirmations: int = 0
    # A mined action is `final` once this many blocks are mined on top of its block;
    # until then a reorg that removes its transaction re-opens it and it is sent again
    # (services/relaying/finality.py). Not 0 on the demo chain either: anvil_reorg and
    # evm_revert take blocks away there too.
    action_final_confirmations: int = Field(default=2, ge=0)
    # The indexer also stores each attested epoch's published leaves (metrics history);
    # an epoch whose proofs file was missing or wrong is looked at again after this long.
    leaf_ingest_retry_seconds: float = 30.0

    # Settlement keeper (a beat task): where the oracle publishes epoch proofs
    # (oracle's GPUCAP_ORACLE_PROOFS_DIR), and how often to look for due work.
    proofs_dir: Path = REPO_ROOT / ".run" / "oracle" / "epochs"
    # The other oracles' folders of the quorum (JSON list): an epoch's file is taken from
    # the first folder whose file verifies against the attested root, so one oracle down
    # or behind never stalls settlement.
    proofs_dirs: list[Path] = Field(default_factory=list)
    settle_interval_seconds: float = 10.0
    # Epoch settlement keeper (EpochSettlement.settle): how often it plans, the gas cap of
    # one batch transaction, and how long a node whose settlement failed waits to retry.
    epoch_settle_interval_seconds: float = 10.0
    epoch_settle_max_batch_gas: int = 8_000_000
    epoch_settle_retry_seconds: float = 300.0
    # Its cadence (services/keepers/cadence.py): one settlement covers every epoch since the
    # node's last at the same gas, so a node settles when its unsettled attested epochs reach
    # min_epochs (a day of hourly epochs: ~1/24 of a settlement's gas per node-epoch), when
    # its oldest unsettled epoch ended max_delay_seconds ago, or, if its pool's raise was
    # drawn, at loan_epochs (lenders' DSCR, arrears and default rules read fresher books).
    # Tests and the demo's short epochs set 1-2.
    epoch_settle_min_epochs: int = Field(default=24, ge=1)
    epoch_settle_max_delay_seconds: float = Field(default=86_400.0, ge=0)
    epoch_settle_loan_epochs: int = Field(default=6, ge=1)

    # Sign-In with Ethereum. The domain wallets show and sign (RFC 3986 authority);
    # empty: api_host:api_port. Admins: comma-separated addresses.
    siwe_domain: str = ""
    siwe_nonce_ttl_seconds: float = 300.0
    session_ttl_seconds: float = 24 * 3600.0
    admin_addresses: str = ""

    # The market's book: open orders one maker may rest at once (their sums are capped by
    # the maker's funds as well: services/market/placing.py).
    market_max_open_orders_per_maker: int = Field(default=100, ge=1)

    # Collateral marked to the market (backend/risk/marking.py): a GPU class's price marks
    # collateral once it traded "enough": at least mark_min_trades trades worth at least
    # mark_min_volume stablecoin base units in the last mark_lookback_seconds, from
    # mark_price_source (primary sales, secondary fills, or both); wash trades never count.
    mark_lookback_seconds: int = Field(default=30 * 86_400, ge=1, le=10 * 365 * 86_400)
    mark_min_trades: int = Field(default=5, ge=1)
    mark_min_volume: int = Field(default=1_000 * 10**6, ge=0)  # 1,000 USD
    mark_price_source: Literal["primary", "secondary", "combined"] = "combined"

    # Health checks must answer fast even when a dependency hangs.
    health_timeout_seconds: float = 1.0
    # The faucet: at most this many new drips per client address per window (any recipients).
    faucet_client_limit: int = Field(default=10, ge=1)
    faucet_client_window_seconds: int = Field(default=3600, ge=1)
    # Relayed market permits (POST /api/v1/market/permits): each costs the relayer gas, so
    # at most this many new ones per client address per window (a wallet needs one per
    # token it trades: the stablecoin and each pool's shares).
    permit_client_limit: int = Field(default=20, ge=1)
    permit_client_window_seconds: int = Field(default=3600, ge=1)
    # /health turns 503 when the work is stale: ended epochs unattested this long (unset:
    # two epoch lengths), the settlement keeper this many epochs behind or silent this
    # long, an action open this long; and when an oracle's own /health (these URLs) is not ok.
    health_max_attestation_lag_seconds: float | None = None
    health_max_keeper_epochs_behind: int = 2
    health_max_keeper_silence_seconds: float = 120.0
    health_max_pending_age_seconds: float = 300.0
    oracle_health_urls: list[str] = Field(default_factory=list)

    # Dashboard (/dashboard): its charting library is served from where npm installed
    # it (package-lock.json pins the version), not copied into the source tree.
    chartjs_dir: Path = REPO_ROOT / "node_modules" / "chart.js" / "dist"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        # uvicorn would take a typo as a literal host name that never matches: refuse it.
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address or CIDR network"
                ) from None
        return [entry.strip() for entry in value]

    @model_validator(mode="after")
    def _secrets_fit_environment(self) -> Settings:
        key = self.relayer_key.get_secret_value().strip() if self.relayer_key else ""
        if self.relayer_keystore_path is not None:
            if key:
                raise ConfigError(
                    "set either GPUCAP_RELAYER_KEYSTORE_PATH or GPUCAP_RELAYER_KEY, not both"
                )
            if self.relayer_keystore_password is None and not self.relayer_keystore_password_file:
                raise ConfigError(
                    "GPUCAP_RELAYER_KEYSTORE_PATH is encrypted: give its password in "
                    "GPUCAP_RELAYER_KEYSTORE_PASSWORD_FILE (or GPUCAP_RELAYER_KEYSTORE_PASSWORD)"
                )
        elif self.environment != "development":
            what = "missing or a placeholder" if key.lower() in PLACEHOLDER_SECRETS else "set"
            raise ConfigError(f"GPUCAP_RELAYER_KEY is {what}: {KEYSTORE_ONLY}")
        elif key.lower() in PLACEHOLDER_SECRETS:
            self.relayer_key = SecretStr(devchain.dev_private_key(RELAYER_DEV_ACCOUNT))
        else:
            digits = key.removeprefix("0x")
            if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ConfigError("GPUCAP_RELAYER_KEY must be 0x followed by 64 hex digits")
        if self.environment != "development" and self.redis_url is None:
            raise ConfigError("GPUCAP_REDIS_URL is required in production (no embedded Redis)")
        return self

    def on_development_chain(self) -> bool:
        """Development settings on anvil's chain id (the demo, the tests): the only place
        the relayer signs with a plain key or a dev key."""
        return self.environment == "development" and self.manifest_chain_id() in (
            None,
            devchain.CHAIN_ID,
        )

    def manifest_chain_id(self) -> int | None:
        """The chain the manifest is for (the relayer refuses a node on any other); None
        when there is no manifest yet (a dev chain being set up)."""
        if not self.manifest_path.exists():
            return None
        try:
            return Deployment.load(self.manifest_path).chain_id
        except ManifestError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def proof_sources(self) -> tuple[Path, ...]:
        """Every folder an epoch's proofs file may come from, GPUCAP_PROOFS_DIR first."""
        return tuple(dict.fromkeys([self.proofs_dir, *self.proofs_dirs]))

    @property
    def rpc_endpoints(self) -> list[str]:
        """The node URLs in order of preference: GPUCAP_RPC_URLS, else GPUCAP_RPC_URL."""
        return parse_urls(self.rpc_urls or self.rpc_url)

    @property
    def effective_siwe_domain(self) -> str:
        return self.siwe_domain or f"{self.api_host}:{self.api_port}"

    @cached_property
    def admins(self) -> frozenset[str]:
        return frozenset(a.strip().lower() for a in self.admin_addresses.split(",") if a.strip())

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.run_dir / 'gpucap.db'}"

    @property
    def embedded_redis_dir(self) -> Path:
        return self.run_dir / "redis"

    @property
    def effective_redis_url(self) -> str:
        """The configured Redis, else the embedded one's (``ensure_redis`` starts it)."""
        return self.redis_url or f"redis://127.0.0.1:{self.embedded_redis_port}/0"

    @cached_property
    def relayer_private_key(self) -> str:
        """The relayer's key; a keystore is decrypted on first use (only the processes that
        sign need it). Raises ConfigError for a keystore that cannot be opened or, outside
        development, a dev key."""
        if self.relayer_keystore_path is None:
            assert self.relayer_key is not None  # set by the validator
            if not self.on_development_chain():
                raise ConfigError(
                    f"GPUCAP_RELAYER_KEY (or the default dev key) refused on chain "
                    f"{self.manifest_chain_id()} ({self.manifest_path}): {KEYSTORE_ONLY}"
                )
            return self.relayer_key.get_secret_value().strip()
        secret = self.relayer_keystore_password
        try:
            password = keystore.read_password(
                password=secret.get_secret_value() if secret is not None else None,
                password_file=self.relayer_keystore_password_file,
                needed_by="GPUCAP_RELAYER_KEYSTORE_PATH",
            )
            key = keystore.decrypt(self.relayer_keystore_path, password)
        except keystore.KeystoreError as exc:
            raise ConfigError(f"the relayer key: {exc}") from None
        if not self.on_development_chain():
            try:
                keystore.refuse_dev_key(key, f"the relayer key in {self.relayer_keystore_path}")
            except keystore.KeystoreError as exc:
                raise ConfigError(str(exc)) from None
        return key


def reasons(exc: ValidationError) -> str:
    """A settings error in one line: each failed check's reason, without pydantic's frame."""
    return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())


def get_settings() -> Settings:
    """Settings from the environment; raises ConfigError with a readable reason."""
    return Settings()
