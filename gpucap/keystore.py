"""Keys from encrypted keystores, and anvil's well-known dev keys refused.

One place for what the relayer, the oracles, the node agent and the deployer do with a
key file: an eth-account keystore (Web3 Secret Storage v3) whose password comes from a
file (it stays out of the process environment and ``ps``) or, second best, from a
variable. Errors say which file and why, never the key or the password.

The dev keys are the first ``devchain.DEV_ACCOUNTS`` accounts of the mnemonic anvil and
Hardhat start with: anyone can sign with them, so outside a dev chain they are refused.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from eth_account import Account
from eth_typing import HexStr

from gpucap import devchain


class KeystoreError(ValueError):
    """A key cannot be used: unreadable file, wrong password, malformed, or a dev key."""


def read_password(*, password: str | None, password_file: Path | None, needed_by: str) -> str:
    """The keystore password from ``password_file`` (one trailing newline, what ``echo pw >
    file`` adds, is not part of it), else ``password``. ``needed_by`` names the setting
    that asked for it, for the error when neither is given."""
    if password_file is not None:
        try:
            return password_file.read_text().removesuffix("\n")
        except OSError as exc:
            raise KeystoreError(
                f"cannot read keystore password file {password_file}: {exc}"
            ) from exc
    if password is None:
        raise KeystoreError(f"{needed_by} is encrypted: give its password file")
    return password


def decrypt(path: Path, password: str) -> str:
    """The 0x private key held by the keystore at ``path``."""
    try:
        keyfile = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"cannot read keystore {path}: {exc}") from exc
    try:
        return "0x" + bytes(Account.decrypt(keyfile, password)).hex()
    except (ValueError, KeyError, TypeError) as exc:
        raise KeystoreError(
            f"cannot decrypt keystore {path}: wrong password or damaged file ({exc})"
        ) from exc


def write(
    path: Path, private_key: str | bytes, password: str, iterations: int | None = None
) -> str:
    """Encrypt ``private_key`` into a new keystore file at ``path`` (created 0600, never
    over an existing file); returns the account's address."""
    if not password:
        raise KeystoreError("a keystore needs a non-empty password")
    key = HexStr(private_key) if isinstance(private_key, str) else private_key
    keyfile = Account.encrypt(key, password, iterations=iterations)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: the encrypted key is never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keyfile, handle)
    return str(Account.from_key(private_key).address)


@cache
def _dev_addresses() -> dict[str, int]:
    return {
        Account.from_key(devchain.dev_private_key(i)).address.lower(): i
        for i in range(devchain.DEV_ACCOUNTS)
    }


def dev_account(address: str) -> int | None:
    """The index of anvil's dev account at ``address``, or None if it is not one."""
    return _dev_addresses().get(address.lower())


def is_dev_key(private_key: str) -> bool:
    """Whether ``private_key`` is one of anvil's (and Hardhat's) pre-funded dev accounts."""
    return dev_account(Account.from_key(private_key).address) is not None


def refuse_dev_key(private_key: str, whose: str) -> None:
    """KeystoreError if ``private_key`` is a well-known dev key; ``whose`` names it."""
    if is_dev_key(private_key):
        raise KeystoreError(
            f"{whose} is one of anvil's well-known development keys (its mnemonic is public): "
            "refused outside development; use a key of your own in an encrypted keystore"
        )
