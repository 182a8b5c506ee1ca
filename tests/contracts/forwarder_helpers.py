"""Forward requests in tests: the runtime library's signing, under the names tests use."""

from __future__ import annotations

from gpucap.signing import (
    FORWARD_REQUEST_TYPES,
    FORWARDER_NAME,
    SignedRequest,
    sign_request,
)
from gpucap.signing import recover_request_signer as recover_signer

__all__ = [
    "FORWARDER_NAME",
    "FORWARD_REQUEST_TYPES",
    "SignedRequest",
    "recover_signer",
    "sign_request",
]
