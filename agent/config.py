"""Node agent settings, from ``GPUCAP_AGENT_*`` environment variables.

The node key signs every sample and challenge answer; the oracle accepts them
only if it recovers to the ``nodeKey`` the registry records for ``NODE_ID``. In
production the key comes from an encrypted eth-account keystore
(``KEYSTORE_PATH`` with ``KEYSTORE_PASSWORD_FILE`` or ``KEYSTORE_PASSWORD``),
as the oracle's does; a plain ``GPUCAP_AGENT_KEY`` is accepted in development
only, and so is ``BEHAVIOUR``, which makes the agent lie in one of the ways the
oracle must catch (tests and the demo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from eth_account import Account
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gpucap import keystore


class AgentConfigError(ValueError):
    """The key cannot be loaded."""


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GPUCAP_AGENT_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        default="development",
        validation_alias=AliasChoices("GPUCAP_AGENT_ENVIRONMENT", "GPUCAP_ENVIRONMENT"),
    )
    node_id: int = Field(ge=1)
    chain_id: int = Field(ge=1)
    host: str = "127.0.0.1"
    port: int = Field(default=9500, ge=0, le=65_535)
    key: SecretStr | None = None
    keystore_path: Path | None = None
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    # nvml: the local GPUs; simulated: a node of the oracle's simulated fleet.
    source: Literal["simulated", "nvml"] = "simulated"
    fleet_seed: int = 0
    gpu_count: int = Field(default=8, ge=1)
    reference_power_w: int = Field(default=700, ge=1)
    # simulated: the GPUs' UUIDs (comma-separated); default: derived from seed and node id.
    gpu_uuids: str = ""
    # Development only: lie the way an operator might (see agent/service.py).
    behaviour: Literal["honest", "fake_work", "replay", "throttle", "boast", "stale"] = "honest"
    throttle_seconds: float = Field(default=3.0, ge=0)

    @model_validator(mode="after")
    def _fits_environment(self) -> AgentSettings:
        if self.keystore_path is not None and self.key is not None:
            raise ValueError("set either GPUCAP_AGENT_KEYSTORE_PATH or GPUCAP_AGENT_KEY, not both")
        if self.environment == "production":
            if self.keystore_path is None:
                raise ValueError("GPUCAP_AGENT_KEYSTORE_PATH is required in production")
            if self.behaviour != "honest":
                raise ValueError("GPUCAP_AGENT_BEHAVIOUR is a development setting")
        elif self.keystore_path is None and self.key is None:
            raise ValueError("set GPUCAP_AGENT_KEYSTORE_PATH (or GPUCAP_AGENT_KEY in development)")
        return self

    def private_key(self) -> str:
        """The node key; raises AgentConfigError if it cannot be read."""
        if self.key is not None:
            key = self.key.get_secret_value().strip()
        else:
            key = self._decrypt_keystore()
        try:
            Account.from_key(key)
        except ValueError as exc:
            raise AgentConfigError("the node key is malformed") from exc
        return key

    def _decrypt_keystore(self) -> str:
        assert self.keystore_path is not None
        try:
            password = keystore.read_password(
                password=(
                    self.keystore_password.get_secret_value() if self.keystore_password else None
                ),
                password_file=self.keystore_password_file,
                needed_by="GPUCAP_AGENT_KEYSTORE_PATH",
            )
            return keystore.decrypt(self.keystore_path, password)
        except keystore.KeystoreError as exc:
            raise AgentConfigError(str(exc)) from exc
