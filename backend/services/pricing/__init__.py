"""Prices that mean something: GPU-hour trades (primary sales and secondary fills) folded
into VWAP, last and time-weighted prices (``stats``), read from the index per class and
delivery window or per class over a lookback (``trades``)."""
