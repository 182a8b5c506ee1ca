"""Deploy the system (tests' configuration) on the node at a port, from a process of its
own: ``python -m tests.support.deploy_on PORT MANIFEST``.

For tests that need a chain of their own: one to reset (``anvil_reset``), where a reset
of the shared node would pull every other module's deployment and snapshots from under
the test process's brownie; or another node implementation (Hardhat's, which brownie
attaches to by its client version).
"""

from __future__ import annotations

import sys
from pathlib import Path

from brownie import accounts, network, project
from brownie._config import CONFIG

from gpucap import devchain


def main(port: int, manifest: Path) -> None:
    dev = CONFIG.networks["development"]
    dev["cmd"] = "anvil"
    dev["host"] = "http://127.0.0.1"
    # brownie attaches to the node already listening there (it launches none).
    dev["cmd_settings"] = {**(dev.get("cmd_settings") or {}), "port": port}
    loaded = project.load(devchain.REPO_ROOT, name="GpucapProject")
    loaded.load_config()
    loaded._add_to_main_namespace()  # `from brownie import CapacityToken`, as `brownie run` does

    network.connect("development")
    from scripts.deploy import DeployConfig, deploy_system, write_manifest

    system = deploy_system(accounts[0], DeployConfig.for_tests())
    write_manifest(system, manifest)
    network.disconnect(kill_rpc=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
