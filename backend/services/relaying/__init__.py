"""Relaying: users' actions from row to mined transaction.

An action is a row with an idempotency key before it is a transaction
(``actions``). The transaction driver (``tx_driver``) takes a group of rows that
share a sender and nonce (one action, or a batch of forward requests:
``batching``, sized by ``batch_sizing``) from signing to a final status, through
the relayer key (``relayer``, one nonce lock per sender: ``nonce``). ``relay`` is
what the relay task calls; ``relay_kick`` wakes one task per burst of forward
requests; ``sweep`` re-enqueues rows nobody works on. ``forward`` and ``faucet``
check and encode the two kinds users ask for.
"""
