"""Indexing: the chain's events into the database, and the read models built from them.

``indexer`` follows the chain (confirmations, reorgs) and stores every gpucap
event, decoded by ``event_decoding``; ``read_models`` projects them into the rows
the read API serves, pools through ``pool_index`` and the contract-mirroring
``pool_book``; ``leaves`` ingests the attested per-node measurements behind each
epoch's root.
"""
