"""The secondary market's backend: the off-chain order book (``book``) and matching a
taker against it into a relayed fill (``matching``)."""
