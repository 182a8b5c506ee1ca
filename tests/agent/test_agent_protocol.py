"""The agent protocol's pieces without a chain: exact matrices, row proofs, signatures."""

from __future__ import annotations

import numpy as np
import pytest
from eth_account import Account

from agent.kernels import Loaded
from agent.protocol import (
    ANSWER_KIND,
    SAMPLE_KIND,
    Challenge,
    ProtocolError,
    expected_rows,
    matrix,
    open_document,
    row_tree,
    sign_document,
    signs,
    verify_row,
)
from gpucap.devchain import dev_private_key

NONCE = bytes(range(32))


def test_the_product_is_exact_and_streamed_rows_match_it():
    n = 300  # two row blocks, the second partial
    a, b = matrix(NONCE, 0, n), matrix(NONCE, 1, n)
    assert a.dtype == np.float32 and set(np.unique(a)) <= set(range(-3, 4))
    go = bytes(32)
    s = signs(go, n)
    assert set(np.unique(s)) == {-1.0, 1.0}
    c = Loaded(a, b, "numpy").product(s)[0]
    exact = a.astype(np.int64) @ (s[:, None].astype(np.int64) * b.astype(np.int64))
    assert (c.astype(np.int64) == exact).all()
    rows = [0, 255, 256, 299]
    assert (expected_rows(NONCE, go, n, rows) == c[rows]).all()
    # Another go is another product: the work cannot start before it is known.
    assert not (expected_rows(NONCE, bytes(31) + b"\1", n, rows) == c[rows]).all()
    # Another nonce is other work.
    assert not (matrix(bytes(32), 0, n) == a).all()


def test_row_proofs_verify_and_a_changed_row_does_not():
    c = matrix(NONCE, 0, 40) @ matrix(NONCE, 1, 40)
    tree = row_tree(c)
    assert verify_row(tree.root, 7, c[7].tolist(), tree.proof(7))
    forged = c[7].copy()
    forged[3] += 1
    assert not verify_row(tree.root, 7, forged.tolist(), tree.proof(7))
    # A true row presented at another index does not pass either.
    assert not verify_row(tree.root, 8, c[7].tolist(), tree.proof(7))


def test_signed_documents_name_their_kind_chain_node_and_signer():
    key = dev_private_key(9)
    document = sign_document(key, {"kind": SAMPLE_KIND, "chainId": 1337, "nodeId": 4, "x": 1})
    payload, signer = open_document(document, SAMPLE_KIND, 1337, 4)
    assert signer == Account.from_key(key).address and payload["x"] == 1
    with pytest.raises(ProtocolError, match="not a"):
        open_document(document, ANSWER_KIND, 1337, 4)
    with pytest.raises(ProtocolError, match="node 4"):
        open_document(document, SAMPLE_KIND, 1337, 5)
    with pytest.raises(ProtocolError, match="chain 1337"):
        open_document(document, SAMPLE_KIND, 1, 4)
    with pytest.raises(ProtocolError, match="unsigned"):
        open_document({"payload": document["payload"]}, SAMPLE_KIND, 1337, 4)
    tampered = {**document, "payload": document["payload"].replace('"x":1', '"x":2')}
    _, other = open_document(tampered, SAMPLE_KIND, 1337, 4)
    assert other != signer  # a changed payload recovers to someone else


def test_challenges_parse_strictly():
    challenge = Challenge(NONCE, 64, 2.5)
    assert Challenge.from_json(challenge.to_json()) == challenge
    for bad in (
        {},
        {"nonce": "0x00", "n": 64, "deadlineSeconds": 1},
        {**challenge.to_json(), "n": 0},
    ):
        with pytest.raises(ProtocolError):
            Challenge.from_json(bad)


def test_the_node_key_comes_from_an_encrypted_keystore_in_production(tmp_path, monkeypatch):
    import subprocess
    import sys

    from pydantic import ValidationError

    from agent.config import AgentConfigError, AgentSettings

    password = tmp_path / "node.pw"
    password.write_text("correct horse\n")
    keystore = tmp_path / "node.json"
    made = subprocess.run(
        [sys.executable, "-m", "agent", "new-keystore", str(keystore)]
        + ["--password-file", str(password), "--iterations", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    address = made.stdout.split()[-1]
    monkeypatch.setenv("GPUCAP_ENVIRONMENT", "production")
    base = {"node_id": 3, "chain_id": 1}
    settings = AgentSettings(**base, keystore_path=keystore, keystore_password_file=password)
    assert Account.from_key(settings.private_key()).address == address
    password.write_text("wrong\n")
    with pytest.raises(AgentConfigError, match="cannot decrypt keystore .* wrong password"):
        settings.private_key()
    with pytest.raises(ValidationError, match="KEYSTORE_PATH is required"):
        AgentSettings(**base, key=dev_private_key(9))
    with pytest.raises(ValidationError, match="development setting"):
        AgentSettings(
            **base, keystore_path=keystore, keystore_password_file=password, behaviour="replay"
        )
