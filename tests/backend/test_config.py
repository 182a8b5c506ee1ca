"""Settings: development works with nothing set; production refuses missing/placeholder
secrets, and off a development chain the relayer's key comes from a keystore only."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.config import Settings
from gpucap.devchain import dev_private_key

REAL_KEY = "0x" + "ab" * 32


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("GPUCAP_"):
            monkeypatch.delenv(name)


def test_development_defaults_to_anvil_account_9() -> None:
    s = Settings()
    assert s.environment == "development"
    assert s.relayer_private_key == dev_private_key(9)
    assert s.redis_url is None and s.effective_redis_url.startswith("redis://127.0.0.1:")
    assert s.sqlalchemy_url == f"sqlite:///{s.run_dir / 'gpucap.db'}"


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUCAP_RPC_URL", "http://10.9.9.9:1")
    monkeypatch.setenv("GPUCAP_DATABASE_URL", "postgresql+psycopg://u:p@db/gpucap")
    s = Settings()
    assert s.rpc_url == "http://10.9.9.9:1"
    assert s.sqlalchemy_url == "postgresql+psycopg://u:p@db/gpucap"


def test_epoch_settlement_cadence_defaults_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings()
    # A day of hourly epochs, at most a day late, a quarter day for a drawn loan.
    assert (
        s.epoch_settle_min_epochs,
        s.epoch_settle_max_delay_seconds,
        s.epoch_settle_loan_epochs,
    ) == (24, 86_400.0, 6)
    monkeypatch.setenv("GPUCAP_EPOCH_SETTLE_MIN_EPOCHS", "1")
    monkeypatch.setenv("GPUCAP_EPOCH_SETTLE_MAX_DELAY_SECONDS", "90")
    monkeypatch.setenv("GPUCAP_EPOCH_SETTLE_LOAN_EPOCHS", "2")
    s = Settings()
    assert (
        s.epoch_settle_min_epochs,
        s.epoch_settle_max_delay_seconds,
        s.epoch_settle_loan_epochs,
    ) == (1, 90.0, 2)
    monkeypatch.setenv("GPUCAP_EPOCH_SETTLE_MIN_EPOCHS", "0")
    with pytest.raises(ValidationError, match="epoch_settle_min_epochs"):
        Settings()


@pytest.mark.parametrize("key", [None, "", "changethis", "0x"])
def test_production_refuses_missing_or_placeholder_key(key: str | None) -> None:
    with pytest.raises(ValidationError, match="GPUCAP_RELAYER_KEY is missing or a placeholder"):
        Settings(environment="production", redis_url="redis://r:6379/0", relayer_key=key)


@pytest.mark.parametrize("key", [REAL_KEY, dev_private_key(3)])
def test_production_refuses_a_plain_key(key: str) -> None:
    with pytest.raises(ValidationError, match="GPUCAP_RELAYER_KEY is set: .* encrypted keystore"):
        Settings(environment="production", redis_url="redis://r:6379/0", relayer_key=key)


def test_production_refuses_embedded_redis(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="GPUCAP_REDIS_URL is required in production"):
        Settings(
            environment="production",
            relayer_keystore_path=tmp_path / "relayer.json",
            relayer_keystore_password="pw",
        )


def test_one_line_reasons() -> None:
    from backend.config import reasons

    with pytest.raises(ValidationError) as refused:
        Settings(environment="production", relayer_key=REAL_KEY)
    line = reasons(refused.value)
    assert "\n" not in line and line.startswith("GPUCAP_RELAYER_KEY is set: outside a dev")


def test_malformed_key_refused_everywhere() -> None:
    with pytest.raises(ValidationError, match="0x followed by 64 hex digits"):
        Settings(relayer_key="0x1234")


def test_trusted_proxies_default_to_none_and_refuse_what_is_not_an_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().trusted_proxies == []
    monkeypatch.setenv("GPUCAP_TRUSTED_PROXIES", '["10.0.0.0/8", " 192.0.2.1", "::1"]')
    assert Settings().trusted_proxies == ["10.0.0.0/8", "192.0.2.1", "::1"]
    monkeypatch.setenv("GPUCAP_TRUSTED_PROXIES", '["10.0.0.0/8", "proxy.internal"]')
    with pytest.raises(ValidationError, match="'proxy.internal' is not an IP address or CIDR"):
        Settings()


class TestRelayerKeystore:
    """The relayer's key from an encrypted keystore (what `python -m devnet serve` passes)."""

    KEY = "0x" + "5a" * 32

    @pytest.fixture
    def keystore_file(self, tmp_path: Path) -> tuple[Path, Path]:
        from gpucap import keystore

        path = tmp_path / "relayer.json"
        keystore.write(path, self.KEY, "pw of the relayer", iterations=2)
        password = tmp_path / "password"
        password.write_text("pw of the relayer\n")
        return path, password

    def test_production_signs_with_the_decrypted_key(self, keystore_file) -> None:
        path, password = keystore_file
        s = Settings(
            environment="production",
            redis_url="redis://r:6379/0",
            relayer_keystore_path=path,
            relayer_keystore_password_file=password,
        )
        assert s.relayer_private_key == self.KEY
        assert "pw of the relayer" not in repr(s)

    def test_a_keystore_needs_its_password(self, keystore_file) -> None:
        with pytest.raises(ValidationError, match="is encrypted: give its password"):
            Settings(relayer_keystore_path=keystore_file[0])

    def test_a_wrong_password_says_so(self, keystore_file) -> None:
        s = Settings(relayer_keystore_path=keystore_file[0], relayer_keystore_password="no")
        with pytest.raises(ValueError, match="cannot decrypt keystore .* wrong password"):
            s.relayer_private_key  # noqa: B018

    def test_keystore_and_plain_key_together_refused(self, keystore_file) -> None:
        with pytest.raises(ValidationError, match="not both"):
            Settings(
                relayer_keystore_path=keystore_file[0],
                relayer_keystore_password="x",
                relayer_key=REAL_KEY,
            )

    def test_production_refuses_an_encrypted_dev_key(self, tmp_path: Path) -> None:
        from gpucap import keystore

        path = tmp_path / "dev.json"
        keystore.write(path, dev_private_key(9), "pw", iterations=2)
        s = Settings(
            environment="production",
            redis_url="redis://r:6379/0",
            relayer_keystore_path=path,
            relayer_keystore_password="pw",
        )
        with pytest.raises(ValueError, match="anvil's well-known development keys"):
            s.relayer_private_key  # noqa: B018
        # development: the dev chain's keys are what it runs on
        assert Settings(relayer_key=dev_private_key(3)).relayer_private_key == dev_private_key(3)


class TestDevelopmentChain:
    """Development settings whose manifest is for another chain than anvil's: no plain key
    (nor the default dev key) signs there, and no dev key from a keystore either."""

    @pytest.fixture
    def manifest(self, tmp_path: Path) -> Path:
        import json

        path = tmp_path / "manifest.json"
        path.write_text(json.dumps({"chain_id": 4242, "deployed_at_block": 1, "contracts": {}}))
        return path

    @pytest.mark.parametrize("key", [None, REAL_KEY, dev_private_key(9)])
    def test_a_plain_key_is_refused_on_another_chain(self, manifest: Path, key) -> None:
        s = Settings(manifest_path=manifest, relayer_key=key)
        with pytest.raises(ValueError, match="refused on chain 4242 .* encrypted keystore only"):
            s.relayer_private_key  # noqa: B018

    def test_a_keystore_signs_there_but_never_with_a_dev_key(
        self, manifest: Path, tmp_path: Path
    ) -> None:
        from gpucap import keystore

        for name, key in (("own", REAL_KEY), ("dev", dev_private_key(9))):
            keystore.write(tmp_path / f"{name}.json", key, "pw", iterations=2)
        own = Settings(
            manifest_path=manifest,
            relayer_keystore_path=tmp_path / "own.json",
            relayer_keystore_password="pw",
        )
        assert own.relayer_private_key == REAL_KEY
        dev = Settings(
            manifest_path=manifest,
            relayer_keystore_path=tmp_path / "dev.json",
            relayer_keystore_password="pw",
        )
        with pytest.raises(ValueError, match="anvil's well-known development keys"):
            dev.relayer_private_key  # noqa: B018

    def test_anvil_chain_keeps_the_plain_key(self, manifest: Path) -> None:
        manifest.write_text(manifest.read_text().replace("4242", "31337"))
        s = Settings(manifest_path=manifest, relayer_key=REAL_KEY)
        assert s.relayer_private_key == REAL_KEY
        assert REAL_KEY not in repr(s)  # a SecretStr never prints
