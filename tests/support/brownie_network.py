"""Point brownie's ``development`` network at a private anvil.

Runs at import, from tests/conftest.py, which pytest loads before brownie
connects (brownie connects at the end of collection). The change is in memory
only: ~/.brownie/network-config.yaml is left as it is.
"""

import os

from brownie._config import CONFIG

from gpucap import devchain

ANVIL_PORT = devchain.free_port()

_dev = CONFIG.networks["development"]
# brownie picks its node backend by the command's name, so it must stay "anvil":
# put the checkout's anvil first on PATH instead of naming its full path.
os.environ["PATH"] = devchain.env_with_toolchain()["PATH"]
_dev["cmd"] = "anvil"
_dev["cmd_settings"] = {
    **(_dev.get("cmd_settings") or {}),
    "port": ANVIL_PORT,
    "evm_version": devchain.HARDFORK,
    "chain_id": devchain.CHAIN_ID,
    "accounts": 20,
    "base_fee": 0,
}
