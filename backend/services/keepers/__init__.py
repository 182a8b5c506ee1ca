"""Keepers: the permissionless calls that must happen on a schedule, planned as actions.

``deliveries``: after a capacity window, prove each node's attested delivery and
settle the reservations. ``epochs``: every epoch, settle each node's revenue
(EpochSettlement batches). Both only create action rows; the relaying sends them.
"""
