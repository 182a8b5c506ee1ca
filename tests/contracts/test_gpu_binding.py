"""NodeRegistry GPU binding: an operator binds its GPUs' ids (keccak256 of their UUIDs) to
its node; a GPU belongs to at most one node; a node exiting releases them."""

from __future__ import annotations

import brownie
import pytest
from brownie import chain

from gpucap.gpu_ids import gpu_id
from tests.support.errors import err

JAILED, EXITING, EXITED = 2, 3, 4
UNBONDING = 3600  # DeployConfig.for_tests()


def uuids(node: int, count: int = 8) -> list[str]:
    return [f"GPU-{node:08x}-0000-4000-8000-{i:012x}" for i in range(count)]


def ids(names: list[str]) -> list[str]:
    return ["0x" + gpu_id(u).hex() for u in names]


def raw(gpu: str) -> bytes:
    """A bytes32 error argument, as brownie renders it."""
    return bytes.fromhex(gpu[2:])


@pytest.fixture
def node_id(register_node):
    return register_node()


def test_operator_binds_its_gpus_one_event_each(registry, node_id, operator):
    gpus = ids(uuids(node_id))
    tx = registry.bindGpus(node_id, gpus, {"from": operator})
    events = tx.events["GpuBound"]
    assert [(e["nodeId"], e["gpuId"]) for e in events] == [(node_id, g) for g in gpus]
    assert all(registry.gpuNode(g) == node_id for g in gpus)
    assert registry.boundGpuCount(node_id) == 8
    print(f"GAS NodeRegistry.bindGpus (8 UUIDs): {tx.gas_used}")


def test_a_gpu_bound_to_one_node_cannot_be_bound_to_another(
    registry, register_node, node_id, operator, operator2
):
    other = register_node(owner=operator2)
    gpus = ids(uuids(node_id, 2))
    registry.bindGpus(node_id, gpus, {"from": operator})
    with brownie.reverts(err("RegistryGpuAlreadyBound", raw(gpus[1]), node_id)):
        registry.bindGpus(other, [ids(uuids(other, 1))[0], gpus[1]], {"from": operator2})
    with brownie.reverts(err("RegistryGpuAlreadyBound", raw(gpus[0]), node_id)):  # twice: same
        registry.bindGpus(node_id, [gpus[0]], {"from": operator})
    fresh = ids(uuids(other, 1))[0]
    with brownie.reverts(err("RegistryGpuAlreadyBound", raw(fresh), node_id)):  # twice in a call
        registry.bindGpus(node_id, [fresh, fresh], {"from": operator})
    assert registry.gpuNode(gpus[1]) == node_id and registry.boundGpuCount(other) == 0


def test_only_the_operator_binds_and_unbinds(registry, node_id, stranger):
    gpus = ids(uuids(node_id, 1))
    with brownie.reverts(err("RegistryNotOperator", node_id, stranger)):
        registry.bindGpus(node_id, gpus, {"from": stranger})
    with brownie.reverts(err("RegistryNotOperator", node_id, stranger)):
        registry.unbindGpus(node_id, gpus, {"from": stranger})
    with brownie.reverts(err("RegistryUnknownNode", 999)):
        registry.bindGpus(999, gpus, {"from": stranger})


def test_no_more_gpus_than_the_node_has_and_no_zero_id(registry, node_id, operator):
    registry.bindGpus(node_id, ids(uuids(node_id, 6)), {"from": operator})
    with brownie.reverts(err("RegistryTooManyGpus", node_id, 9, 8)):
        registry.bindGpus(node_id, ids(uuids(node_id + 1000, 3)), {"from": operator})
    with brownie.reverts(err("RegistryInvalidGpuId")):
        registry.bindGpus(node_id, ["0x" + "00" * 32], {"from": operator})


def test_unbind_releases_a_gpu_for_another_node(
    registry, register_node, node_id, operator, operator2
):
    gpus = ids(uuids(node_id, 3))
    registry.bindGpus(node_id, gpus, {"from": operator})
    tx = registry.unbindGpus(node_id, gpus[:2], {"from": operator})
    assert [(e["nodeId"], e["gpuId"]) for e in tx.events["GpuUnbound"]] == [
        (node_id, g) for g in gpus[:2]
    ]
    assert registry.gpuNode(gpus[0]) == 0 and registry.boundGpuCount(node_id) == 1
    with brownie.reverts(err("RegistryGpuNotBound", raw(gpus[0]), node_id)):
        registry.unbindGpus(node_id, [gpus[0]], {"from": operator})
    other = register_node(owner=operator2)
    registry.bindGpus(other, [gpus[0]], {"from": operator2})
    assert registry.gpuNode(gpus[0]) == other
    with brownie.reverts(err("RegistryGpuNotBound", raw(gpus[0]), node_id)):
        registry.unbindGpus(node_id, [gpus[0]], {"from": operator})


def test_an_exit_releases_the_nodes_gpus(registry, register_node, node_id, operator, operator2):
    gpus = ids(uuids(node_id, 2))
    registry.bindGpus(node_id, gpus, {"from": operator})
    registry.requestExit(node_id, {"from": operator})
    assert registry.gpuNode(gpus[0]) == node_id  # still its own while it unbonds
    with brownie.reverts(err("RegistryInvalidStatus", node_id, EXITING)):
        registry.bindGpus(node_id, ids(uuids(node_id + 1000, 1)), {"from": operator})
    chain.sleep(UNBONDING + 1)
    chain.mine()
    registry.withdrawBond(node_id, {"from": operator})
    assert registry.gpuNode(gpus[0]) == 0  # released with the exit
    other = register_node(owner=operator2)
    tx = registry.bindGpus(other, gpus, {"from": operator2})
    assert [(e["nodeId"], e["gpuId"]) for e in tx.events["GpuUnbound"]] == [
        (node_id, g) for g in gpus
    ]
    assert [e["nodeId"] for e in tx.events["GpuBound"]] == [other, other]
    assert registry.gpuNode(gpus[1]) == other
    with brownie.reverts(err("RegistryInvalidStatus", node_id, EXITED)):
        registry.bindGpus(node_id, ids(uuids(node_id + 1000, 1)), {"from": operator})


def test_a_jailed_node_may_still_bind(registry, node_id, operator, admin):
    registry.jail(node_id, b"\x01" * 32, {"from": admin})
    registry.bindGpus(node_id, ids(uuids(node_id, 1)), {"from": operator})
    assert registry.nodeStatus(node_id) == JAILED and registry.boundGpuCount(node_id) == 1


def test_gpu_id_is_keccak_of_the_uuid_as_nvml_reports_it():
    uuid = "GPU-5b3c2a10-0000-4000-8000-000000000001"
    assert gpu_id(f" {uuid}\n") == gpu_id(uuid)
    assert gpu_id(uuid) != gpu_id(uuid.upper())
    with pytest.raises(ValueError):
        gpu_id("  ")
