"""Stateful property: EpochSettlement accounts for every stablecoin unit, to the unit.

World: node A with a funded, drawn and fully staked RevenuePool (two stakers), node B without
a pool; a payer billed per attested GPU-hour for both; capacity offers on both nodes.
Random sequences of: capacity sales (proceeds held for the node), attesting an epoch and
settling any subset of the nodes in one batch (each settled node's range runs from its last
settled epoch: nodes left out, and epochs never attested, make ranges), settling twice, forged
leaves, split changes within bounds, operator / fee / reserve withdrawals, staker claims,
unstake requests, losses booked against the stakers (up to wiping them out), bond slashes (up
to exhausting the bond), time passing, and billing-terms changes between settlements (a new
price or payer, the payer's consent raised or withdrawn), with the keeper's answer to a range
that would cross one: settling the node up to the newest attested epoch before the change.

Beside the chain: each node's cumulative counter (chained over its attested leaves), the split
of every settlement computed in integers (settlement_helpers.expected_split: usage from the
counter's difference since the last settled leaf, or the epoch's own usage for a first
settlement; the service of every epoch of the range, summed per epoch from debtServiceDue, so
each epoch owes once; floors, stakers take the remainder, unpaid service carried as arrears),
each node's DSCR window of settlement records (push, evict the oldest while the rest cover the
window), each node's terms log (fromEpoch, payer, price, consent snapshot), and ledgers of every
movement. A settlement's item reverts SettlementTermsChangeInRange (skipped in its batch) iff a
change takes effect inside its range after the first epoch with usage and the epochs before it
were not all passed over; otherwise every epoch of the range with usage is checked to be under
the one entry that bills it (per-epoch billing). After every step:
- the payer's balance == its start less every usage billed; usageTerms == the newest entry;
- everything that came in (usage + proceeds) == fees + reserve + operator credits (held or
  withdrawn) + sent to the pool, to the unit; the settlement's balance == what it holds;
- the pool: revenue in == what the settlement sent; in units of 1e-36, revenue in ==
  paid + Σ claimable (whole units + each staker's fraction) + the undistributed remainder;
- per node: last settled epoch, arrears, window net / service / epochs / service epochs, DSCR
  and flags == shadow;
- node A's default, declared by anyone once due (PoolLoans): the waterfall (bond, stakers,
  reserve, holders) and the cash it moves to the unit, none of it left in PoolLoans;
  afterwards its revenue repays the recovery claim (the pool's revenue in == settled revenue
  + the default's cash);
- node A's loan: cash sweep while flagged (the operator's share pays what net left owed, in the
  shadow split too), cured after 3 clean epochs, the runs (in epochs) and LoanStateChanged ==
  shadow.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from brownie import ZERO_ADDRESS
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from gpucap.attestation import Cumulative, build_commitment
from tests.contracts.capacity_helpers import DAY, NODE_BOND, PRICE, token_id
from tests.contracts.node_helpers import USD
from tests.contracts.settlement_helpers import (
    BPS,
    DISTRIBUTOR_ROLE,
    Split,
    deploy_hub_pool,
    error_data,
    expected_split,
    swept,
)
from tests.oracle.hub_helpers import ORACLE_KEYS, signatures
from tests.support.errors import err
from tests.support.leaves import test_leaf
from tests.support.stateful import (
    SnapshotMachine,
    batch_views,
    mine_at_least,
    revert_of,
    run_machine,
    stateful_timeout,
    transact,
)

pytestmark = stateful_timeout

SCALE = 10**36
MAX = 2**256 - 1
USAGE_PRICE = (
    2_000 * USD
)  # up to ~266 USD gross an epoch: debt service (~100 USD) sometimes covered
pick = st.integers(0, 2**16)
PLEDGE_BPS = 300
MAX_TERMS_GAP_EPOCHS = 64
CROSSING = "SettlementTermsChangeInRange(uint256,uint64)"


class SettlementMachine(SnapshotMachine):
    def __init__(self) -> None:
        super().__init__()
        latest = self.w3.eth.get_block("latest")["timestamp"]
        mine_at_least(latest + 1)
        self.bps = (500, 300, 3_000)
        self.last_attested = self.hub_last
        self.commitments: dict[int, object] = {}
        self.came_in = 0
        self.fees_out = self.reserve_out = self.operator_out = 0
        self.to_pool = 0
        self.pool_paid = 0
        self.held = dict.fromkeys(self.nodes, 0)  # capacity proceeds not yet collected
        self.cum = {n: Cumulative() for n in self.nodes}  # each node's chained counters
        self.book = {
            n: {"last": 0, "settled_cum": 0, "arrears": 0, "records": []} for n in self.nodes
        }
        # The pooled node's loan: state (0 performing, 1 cash sweep), clean and low-DSCR runs.
        self.loan = {"state": 0, "clean": 0, "low": 0, "claim": 0}
        self.default_cash = 0  # seized bond + reserve paid into the pool at default
        self.reserve_defaulted = 0  # the part of it that came from the reserve
        self.fees = self.reserve = self.credits = 0
        # Each node's terms log, oldest first: (fromEpoch, payer, price, consent snapshot);
        # entry 0 is "no terms". The payer's live consent per node.
        self.terms = {n: list(log) for n, log in self.terms0.items()}
        self.consent = dict.fromkeys(self.nodes, USAGE_PRICE)
        self.billed = 0  # usage pulled from the payer

    # ------------------------------------------------------------------ rules

    @rule(node=st.integers(0, 1), amount=st.integers(1, 3))
    def buy_capacity(self, node: int, amount: int) -> None:
        transact(self.capacity, "buy", (self.offers[node], amount), self.buyer)
        self.held[self.nodes[node]] += amount * PRICE

    # Epochs never attested before this one: 0 or 1, or a long gap (the next settled range
    # then reaches past the DSCR window of 24 epochs: records capped and evicted).
    @rule(
        skip=st.sampled_from([0, 0, 1, 22, 23]),
        milli=st.tuples(st.integers(0, 133), st.integers(0, 133)),
        # (): attested, nobody settles (a stretch for a terms change to fall inside)
        subset=st.sampled_from([(0,), (1,), (0, 1), (1, 0), (), ()]),
    )
    def attest_and_settle(self, skip, milli, subset) -> None:
        epoch = self._attest(self.last_attested + 1 + skip, milli)
        if subset:
            self._settle(epoch, [self.nodes[i] for i in subset])

    @rule(
        node=st.integers(0, 1),
        price=st.sampled_from([USAGE_PRICE // 2, USAGE_PRICE * 2, 0]),
        milli=st.tuples(st.integers(0, 133), st.integers(0, 133)),
    )
    def terms_change_inside_a_stretch(self, node: int, price: int, milli) -> None:
        """Usage, a price change, usage under it, then both nodes settle at the newest epoch:
        the changed node's range crosses the change (unless no usage lies before it)."""
        self._attest(self.last_attested + 1, milli)
        self.terms_change(node, price, True)
        change = self.terms[self.nodes[node]][-1][0]
        if change - 1 > self.last_attested:
            self._attest(change - 1, milli)
        self._settle(self._attest(change, milli), list(self.nodes))

    def _attest(self, epoch: int, milli) -> int:
        """Attests `epoch` (after the last attested) with `milli` per node; returns it."""
        mine_at_least(self.hub.epochEnd(epoch))
        leaves = [
            test_leaf(n, epoch, 10_000, 5_000, 10_000, 180_000, m, base=self.cum[n])
            for n, m in zip(self.nodes, milli, strict=True)
        ]
        for leaf in leaves:
            self.cum[leaf.node_id] = Cumulative.of(leaf)
        c = build_commitment(epoch, leaves, self.config_version)
        sigs = signatures(self.hub, c.report, ORACLE_KEYS[:2])
        transact(self.hub, "attest", (c.report.as_tuple(), sigs), self.transmitter)
        self.last_attested = epoch
        self.commitments[epoch] = c
        return epoch

    @precondition(lambda self: self.commitments)
    @rule(pick=pick)
    def keeper_settles_before_a_change(self, pick: int) -> None:
        """The keeper's move for a node whose range up to the newest epoch would cross a
        change: settle it up to the newest attested epoch before the change."""
        node = self.nodes[pick % 2]
        newest = max(self.commitments)
        if self.book[node]["last"] >= newest:
            return
        change, _ = self._range_terms(node, self._leaf(self.commitments[newest], node))
        if change is None:
            return
        before = [e for e in self.commitments if self.book[node]["last"] < e < change]
        if before:
            self._settle(max(before), [node])

    @rule(
        node=st.integers(0, 1),
        price=st.sampled_from([USAGE_PRICE, USAGE_PRICE // 2, USAGE_PRICE * 2, 0]),
        named=st.booleans(),
    )
    def terms_change(self, node: int, price: int, named: bool) -> None:
        node_id = self.nodes[node]
        payer = self.payer.address if named else ZERO_ADDRESS
        emitted = transact(self.settlement, "setUsageTerms", (node_id, payer, price), self.admin)
        self._log(node_id, emitted["UsageTermsSet"])

    @rule(node=st.integers(0, 1), max_price=st.sampled_from([0, USAGE_PRICE, USAGE_PRICE * 2]))
    def payer_consents(self, node: int, max_price: int) -> None:
        node_id = self.nodes[node]
        emitted = transact(self.settlement, "approveUsage", (node_id, max_price), self.payer)
        self.consent[node_id] = max_price
        if self.terms[node_id][-1][1] == self.payer.address:  # its payer: a new entry
            self._log(node_id, emitted["UsageTermsSet"])
        else:  # consent of an address the terms do not name: snapshotted when they do
            assert "UsageTermsSet" not in emitted

    def _log(self, node: int, ev) -> None:
        entry = (ev["fromEpoch"], ev["payer"], ev["pricePerGpuHour"], ev["maxPricePerGpuHour"])
        assert entry[0] > self.last_attested  # never reaches back into an attested epoch
        assert entry[3] == (self.consent[node] if entry[1] == self.payer.address else 0)
        log = self.terms[node]
        if log[-1][0] == entry[0]:
            log[-1] = entry  # the same fromEpoch: the newest entry is replaced
        else:
            log.append(entry)

    def _terms_at(self, node: int, epoch: int) -> tuple:
        return max((x for x in self.terms[node] if x[0] <= epoch), key=lambda x: x[0])

    def _range_terms(self, node: int, leaf) -> tuple[int | None, tuple | None]:
        """(fromEpoch of the change the range crosses, None) if settling `leaf` must revert,
        else (None, the entry that bills it): the contract's rule, from the shadow."""
        b, epoch = self.book[node], leaf.epoch
        no_usage_before = leaf.cum_milli_gpu_hours - leaf.milli_gpu_hours == b["settled_cum"]
        first = epoch if b["last"] == 0 or no_usage_before else b["last"] + 1
        for f, *_ in self.terms[node]:
            if first < f <= epoch:
                holes = all(e not in self.commitments for e in range(first, f))
                if f - first > MAX_TERMS_GAP_EPOCHS or not holes:
                    return f, None
        entry = self._terms_at(node, epoch)
        # Per-epoch billing: every epoch of the range with usage is under this entry.
        for e in range(first, epoch + 1):
            if e in self.commitments and self._leaf(self.commitments[e], node).milli_gpu_hours:
                assert self._terms_at(node, e) == entry, (node, e, epoch)
        return None, entry

    @staticmethod
    def _leaf(c, node):
        return next(x for x in c.leaves if x.node_id == node)

    def _settle(self, epoch: int, nodes: list[int]) -> None:
        """Settles `nodes` at attested `epoch` in one batch and checks every figure."""
        c = self.commitments[epoch]
        items = [self._item(c, n) for n in nodes]
        # The pooled node's range (last, epoch] owes the service of each of its epochs from the
        # draw on, once: summed here epoch by epoch (the schedule ends after the tenor).
        last_a = self.book[self.pooled]["last"]
        first = max(last_a, self.draw_epoch) + 1
        scheduled = range(first, min(epoch, self.draw_epoch + self.tenor) + 1)
        due = (
            batch_views(*((self.pool, "debtServiceDue", (e,)) for e in scheduled))
            if scheduled
            else []
        )
        range_service = sum(sum(d) for d in due)
        expected, ranges, crossing, unbilled = {}, {}, {}, set()
        for node in nodes:
            b, leaf = self.book[node], self._leaf(c, node)
            change, entry = self._range_terms(node, leaf)
            if change is not None:
                crossing[node] = change
                continue
            billed = (
                leaf.milli_gpu_hours
                if b["last"] == 0
                else leaf.cum_milli_gpu_hours - b["settled_cum"]
            )
            ranges[node] = (
                epoch if b["last"] == 0 else b["last"] + 1,
                leaf.cum_milli_gpu_hours,
            )
            _, payer, price, max_price = entry
            usage = price * billed // 1000 if payer != ZERO_ADDRESS and price <= max_price else 0
            if payer != ZERO_ADDRESS and price > max_price:
                unbilled.add(node)
            live = node == self.pooled
            svc = range_service if live else 0
            expected[node] = expected_split(
                usage, self.held[node], svc, b["arrears"], live, self.bps
            )
            if live and self.loan["state"] == 1:
                expected[node] = swept(expected[node])
            if live and self.loan["state"] == 2:
                expected[node] = self._recovery(usage, self.held[node])
        if len(crossing) == len(nodes):  # every item reverts: so does the batch, as the first
            got = revert_of(self.errors, "settle", epoch, items, sender=self.settler)
            assert got == err("SettlementTermsChangeInRange", nodes[0], crossing[nodes[0]])
            return
        emitted = transact(self.settlement, "settle", (epoch, items), self.settler)
        assert "EpochsSkipped" not in emitted
        skipped = emitted["SettlementItemSkipped"] if "SettlementItemSkipped" in emitted else []  # noqa: SIM401
        assert {ev["nodeId"]: bytes(ev["reason"]) for ev in skipped} == {
            n: error_data(CROSSING, n, f) for n, f in crossing.items()
        }
        not_billed = emitted["UsageNotBilled"] if "UsageNotBilled" in emitted else []  # noqa: SIM401
        assert {ev["nodeId"] for ev in not_billed} == unbilled
        events = emitted["NodeSettled"]
        assert len(events) == len(nodes) - len(crossing)
        for ev in events:
            node, s = ev["nodeId"], expected[ev["nodeId"]]
            assert (ev["fromEpoch"], ev["epoch"]) == (ranges[node][0], epoch)
            got = [
                ev[k]
                for k in (
                    "usage",
                    "proceeds",
                    "fee",
                    "reserve",
                    "operatorShare",
                    "debtPaid",
                    "stakers",
                )
            ]
            assert got == [s.usage, s.proceeds, s.fee, s.reserve, s.operator, s.debt, s.stakers]
            assert s.total() == s.usage + s.proceeds  # to the unit
            assert ev["serviceAssets"] == s.service
            epochs = epoch - ranges[node][0] + 1
            self.billed += s.usage
            self._book(node, epoch, ranges[node][1], epochs, s)
            if node == self.pooled and self.loan["state"] != 2:
                self._advance_loan(emitted, epochs)

    @precondition(lambda self: any(b["last"] for b in self.book.values()))
    @rule(pick=pick)
    def settle_twice(self, pick: int) -> None:
        settled = [n for n in self.nodes if self.book[n]["last"]]
        node = settled[pick % len(settled)]
        last = self.book[node]["last"]
        epochs = [e for e in self.commitments if e <= last]
        epoch = epochs[pick % len(epochs)]
        item = self._item(self.commitments[epoch], node)
        got = revert_of(self.errors, "settle", epoch, [item], sender=self.settler)
        assert got == err("SettlementAlreadySettled", node, epoch, last)

    @precondition(lambda self: self.commitments)
    @rule(pick=pick, delta=st.integers(1, 50))
    def forged_leaf(self, pick: int, delta: int) -> None:
        epoch = max(self.commitments)
        node = self.nodes[pick % 2]
        if self.book[node]["last"] >= epoch:
            return
        leaf, proof = self._item(self.commitments[epoch], node)
        forged = (*leaf[:-1], (leaf[-1] + delta) % 134)
        got = revert_of(self.errors, "settle", epoch, [(forged, proof)], sender=self.settler)
        assert got == err("OracleInvalidProof", node, epoch)

    @rule(fee=st.integers(0, 2_000), reserve=st.integers(0, 2_000), op=st.integers(0, 6_000))
    def set_split(self, fee: int, reserve: int, op: int) -> None:
        transact(self.settlement, "setSplit", (fee, reserve, op), self.admin)
        self.bps = (fee, reserve, op)

    @precondition(lambda self: self.credits > 0)
    @rule()
    def operator_withdraws(self) -> None:
        transact(self.settlement, "withdrawOperatorShare", (self.operator.address,), self.operator)
        self.operator_out += self.credits
        self.credits = 0

    @rule(per_mille=st.integers(1, 1_000), reserve=st.booleans())
    def treasurer_withdraws(self, per_mille: int, reserve: bool) -> None:
        held = self.reserve if reserve else self.fees
        amount = held * per_mille // 1000
        fn = "withdrawReserve" if reserve else "withdrawFees"
        if amount == 0:
            got = revert_of(self.errors, fn, self.admin.address, 0, sender=self.admin)
            assert got == err("SettlementZeroAmount")
            return
        transact(self.settlement, fn, (self.admin.address, amount), self.admin)
        if reserve:
            self.reserve -= amount
            self.reserve_out += amount
        else:
            self.fees -= amount
            self.fees_out += amount

    @rule(who=st.integers(0, 1))
    def staker_claims(self, who: int) -> None:
        staker = self.stakers[who]
        (info,) = batch_views((self.pool, "stakeOf", (staker.address,)))
        if info[5] == 0:  # claimableAssets
            return
        emitted = transact(self.pool, "claim", (staker.address,), staker)
        self.pool_paid += emitted["RevenueClaimed"]["assets"]

    @rule(who=st.integers(0, 1), per_mille=st.integers(1, 1_000))
    def staker_requests_unstake(self, who: int, per_mille: int) -> None:
        staker = self.stakers[who]
        (info,) = batch_views((self.pool, "stakeOf", (staker.address,)))
        shares = (info[0] + info[1]) * per_mille // 1000  # earning + warming up
        if shares == 0:
            return
        transact(self.pool, "requestUnstake", (shares,), staker)

    @rule(per_mille=st.integers(1, 1_000))
    def pool_books_loss(self, per_mille: int) -> None:
        (totals,) = batch_views((self.pool, "totals", ()))
        assets = totals[7] * per_mille // 1000 // 10**12  # staked shares (1 USD each) in units
        if totals[7] == 0:
            got = revert_of(self.pool, "bookLoss", 1, self.admin.address, sender=self.admin)
            assert got == err("PoolNothingStaked")
            return
        transact(self.pool, "bookLoss", (max(assets, 1), self.admin.address), self.admin)

    @rule(node=st.integers(0, 1), per_mille=st.integers(1, 1_000))
    def bond_is_slashed(self, node: int, per_mille: int) -> None:
        node_id = self.nodes[node]
        # Free bond only: node A's pool holds a pledge (locked) from its first settlement on.
        (free,) = batch_views((self.registry, "freeBond", (node_id,)))
        amount = free * per_mille // 1000
        if amount == 0:
            return  # exhausted: settlement must still account exactly
        transact(
            self.registry, "slash", (node_id, amount, self.admin.address, b"\1" * 32), self.admin
        )

    @rule(epochs=st.integers(1, 2))
    def time_passes(self, epochs: int) -> None:
        now = self.w3.eth.get_block("latest")["timestamp"]
        mine_at_least(now + epochs * self.epoch_seconds)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _item(c, node):
        leaf = next(x for x in c.leaves if x.node_id == node)
        return (leaf.values(), c.proof(node))

    @rule()
    def default_is_declared(self) -> None:
        """Anyone may declare the default once arrears pass 10% of the 1_200 USD drawn or DSCR
        stayed under 1.00x for 6 settlements; the waterfall and the cash are checked to the unit."""
        node, loan = self.pooled, self.loan
        due = loan["state"] != 2 and (
            self.book[node]["arrears"] > 1_200 * USD // 10 or loan["low"] >= 6
        )
        if not due:
            got = revert_of(self.loans, "declareDefault", node, sender=self.buyer)
            assert got == err("LoanNoDefault", node, loan["state"])
            return
        last = self.book[node]["last"]
        principal, chain_loan, totals, bond, pool_cash = batch_views(
            (self.pool, "debtOutstanding", (last,)),
            (self.loans, "loanOf", (node,)),
            (self.pool, "totals", ()),
            (self.registry, "bondOf", (node,)),
            (self.stablecoin, "balanceOf", (self.pool.address,)),
        )
        pledged = chain_loan[4]
        if not chain_loan[1]:  # not pledged yet: taken at the default
            (free,) = batch_views((self.registry, "freeBond", (node,)))
            pledged = min(bond[0] * PLEDGE_BPS // BPS, free)
        claim = principal + self.book[node]["arrears"]
        seized = min(pledged, claim)
        stakers = min(claim - seized, totals[7] // 10**12)  # 1 USD a share
        reserve = min(claim - seized - stakers, self.reserve)
        holders = claim - seized - stakers - reserve
        emitted = transact(self.loans, "declareDefault", (node,), self.buyer)
        assert dict(emitted["LossWaterfall"]) == {
            "nodeId": node,
            "bond": seized,
            "stakers": stakers,
            "reserve": reserve,
            "holders": holders,
        }
        assert emitted["LoanDefaulted"]["recoveryClaim"] == claim - seized - reserve
        after_bond, after_cash = batch_views(
            (self.registry, "bondOf", (node,)),
            (self.stablecoin, "balanceOf", (self.pool.address,)),
        )
        assert after_bond[0] == bond[0] - seized
        assert after_cash == pool_cash + seized + reserve
        self.reserve -= reserve
        self.reserve_defaulted += reserve
        self.default_cash += seized + reserve
        self.book[node]["arrears"] = 0
        loan["state"], loan["claim"] = 2, claim - seized - reserve

    def _recovery(self, usage: int, proceeds: int) -> Split:
        """A defaulted node's split: net, then the operator's share, repay the claim."""
        gross = usage + proceeds
        fee, reserve, op = (gross * x // BPS for x in self.bps)
        net = gross - fee - reserve - op
        paid = min(self.loan["claim"], net + op)
        self.loan["claim"] -= paid
        return Split(
            usage, proceeds, fee, reserve, op - max(paid - net, 0), paid, max(net - paid, 0), 0, 0
        )

    def _window(self, node: int) -> tuple[int, int, int, int]:
        """The node's DSCR window: net, service, epochs, epochs of records with service."""
        records = self.book[node]["records"]
        return (
            sum(r[0] for r in records),
            sum(r[1] for r in records),
            sum(r[2] for r in records),
            sum(r[2] for r in records if r[1]),
        )

    def _advance_loan(self, emitted, epochs: int) -> None:
        """The lifecycle after a settlement of `epochs` epochs of the pooled node, from the
        shadow's DSCR: each run grows by the range's epochs."""
        loan = self.loan
        net, service, _, svc_epochs = self._window(self.pooled)
        dscr = MAX if service == 0 else net * BPS // service
        flagged = svc_epochs > 0 and dscr < 12_500
        loan["low"] = (
            min(loan["low"] + epochs, 2**16 - 1) if svc_epochs > 0 and dscr < 10_000 else 0
        )
        loan["clean"] = 0 if flagged else min(loan["clean"] + epochs, 2**16 - 1)
        before = loan["state"]
        if flagged:
            loan["state"] = 1
        elif before == 1 and loan["clean"] >= 3:
            loan["state"] = 0
        changed = (
            [dict(e) for e in emitted["LoanStateChanged"]] if "LoanStateChanged" in emitted else []
        )
        if loan["state"] != before:
            assert [(e["from"], e["to"]) for e in changed] == [(before, loan["state"])]
        else:
            assert changed == []

    def _book(self, node: int, epoch: int, cum: int, epochs: int, s) -> None:
        b = self.book[node]
        b["last"], b["settled_cum"] = epoch, cum
        b["arrears"] = s.arrears
        gross = s.usage + s.proceeds
        fee, reserve, op = (gross * x // BPS for x in self.bps)
        # The window: push the record (epochs capped at the window), then drop the oldest
        # while the others still cover the window.
        records = b["records"]
        records.append((gross - fee - reserve - op, s.service, min(epochs, self.window)))
        while sum(r[2] for r in records) - records[0][2] >= self.window:
            records.pop(0)
        self.held[node] = 0
        self.came_in += gross
        self.fees += s.fee
        self.reserve += s.reserve
        self.credits += s.operator
        self.to_pool += s.debt + s.stakers

    # ------------------------------------------------------------------ invariants

    @invariant()
    def every_unit_accounted(self) -> None:
        st_, pool = self.settlement, self.pool
        views = batch_views(
            (st_, "totalIn", ()),
            (st_, "feesHeld", ()),
            (st_, "reserveHeld", ()),
            (st_, "operatorCreditsHeld", ()),
            (st_, "totalToPools", ()),
            (self.stablecoin, "balanceOf", (st_.address,)),
            (pool, "totals", ()),
            *((pool, "stakeOf", (s.address,)) for s in self.stakers),
            *((st_, "nodeRisk", (n,)) for n in self.nodes),
            *((self.capacity, "heldProceeds", (n,)) for n in self.nodes),
            (self.stablecoin, "balanceOf", (self.loans.address,)),
            (self.stablecoin, "balanceOf", (self.payer.address,)),
            *((st_, "usageTerms", (n,)) for n in self.nodes),
        )
        assert views[14] == self.payer_start - self.billed
        for node, terms in zip(self.nodes, views[15:17], strict=True):
            assert tuple(terms) == tuple(self.terms[node][-1][1:3])
        total_in, fees, reserve, credits, to_pools, balance, totals = views[:7]
        stakes, risks, held = views[7:9], views[9:11], views[11:13]
        assert (total_in, fees, reserve, credits, to_pools) == (
            self.came_in,
            self.fees,
            self.reserve,
            self.credits,
            self.to_pool,
        )
        assert balance == fees + reserve + credits
        assert views[13] == 0  # PoolLoans never holds cash: a default's passes through to the pool
        assert total_in == (
            fees
            + reserve
            + credits
            + self.fees_out
            + self.reserve_out
            + self.reserve_defaulted
            + self.operator_out
            + to_pools
        )
        # Pool: revenue in == what we sent; in 1e-36 units, in == paid + claimable + remainder.
        revenue_in, revenue_paid, undistributed_scaled = totals[3], totals[4], totals[6]
        assert revenue_in == to_pools + self.default_cash  # settled revenue + default cash
        assert revenue_paid == self.pool_paid
        claimable_scaled = sum(s[5] * SCALE + s[6] for s in stakes)
        assert revenue_in * SCALE == revenue_paid * SCALE + claimable_scaled + undistributed_scaled
        assert list(held) == [self.held[n] for n in self.nodes]
        for node, risk in zip(self.nodes, risks, strict=True):
            b = self.book[node]
            net, service, epochs, svc_epochs = self._window(node)
            dscr = MAX if service == 0 else net * BPS // service
            assert (risk[13], risk[9]) == (b["arrears"], b["last"])
            assert (risk[5], risk[6], risk[7], risk[8]) == (net, service, epochs, svc_epochs)
            assert risk[3] == dscr
            assert risk[11] == (svc_epochs > 0 and dscr < 12_500)  # dscrBreach
            assert risk[12] is False  # 1_200 USD of debt against 250k USD of GPUs
        (loan,) = batch_views((self.loans, "loanOf", (self.pooled,)))
        assert (loan[0], loan[3], loan[2], loan[5]) == (
            self.loan["state"],
            self.loan["clean"],
            self.loan["low"],
            self.loan["claim"],
        )


@pytest.fixture(scope="module")
def world(
    system, register_node, operator, admin, fund, buyer, staker, stranger, relayer, accounts, h100
):
    settlement, hub, capacity, stablecoin = (
        system.settlement,
        system.oracle_hub,
        system.capacity,
        system.stablecoin,
    )
    payer = accounts[9]
    nodes = [register_node(), register_node()]
    fund(operator, 2 * NODE_BOND, system.registry)
    window = ((hub.genesisTimestamp() + 3 * DAY) // DAY) * DAY
    offers = []
    for node in nodes:
        system.registry.depositBond(node, NODE_BOND, {"from": operator})
        settlement.setUsageTerms(node, payer, USAGE_PRICE, {"from": admin})
        settlement.approveUsage(node, USAGE_PRICE, {"from": payer})
        tx = capacity.publishOffer(node, token_id(h100, window), 100, PRICE, {"from": operator})
        offers.append(tx.return_value)
    fund(payer, 10**7 * USD, settlement)
    terms0 = {
        n: [(int(c[3]), str(c[0]), int(c[1]), int(c[2])) for c in settlement.termsChanges(n)]
        for n in nodes
    }
    fund(buyer, 10**6 * USD, capacity)
    # Node A's pool: two stakers fund the round (700 + 500 USD), stake it all; the operator draws.
    pool = deploy_hub_pool(hub, stablecoin, operator, admin, nodes[0], gate=settlement)
    for who, amount in ((staker, 700 * USD), (stranger, 500 * USD)):
        fund(who, amount, pool)
        pool.deposit(amount, who, {"from": who})
    for who in (staker, stranger):
        pool.stake(pool.balanceOf(who), {"from": who})
    pool.drawRaise({"from": operator})
    pool.grantRole(DISTRIBUTOR_ROLE, settlement, {"from": admin})
    pool.grantRole(pool.SLASHER_ROLE(), admin, {"from": admin})
    pool.grantRole(pool.SLASHER_ROLE(), system.loans, {"from": admin})  # the default's first loss
    # A 3% pledge (300 USD of a 10k bond) leaves a default's loss to every class below it.
    system.loans.setLoanParams((PLEDGE_BPS, 1_000, 10_000, 6, 3), {"from": admin})
    system.registry.grantRole(system.registry.SLASHER_ROLE(), admin, {"from": admin})
    settlement.setPool(nodes[0], pool, {"from": admin})
    errors = SimpleNamespace(
        address=settlement.address,
        abi=settlement.abi + [e for e in hub.abi if e.get("type") == "error"],
    )
    from brownie import web3

    return {
        "settlement": settlement,
        "loans": system.loans,
        "registry": system.registry,
        "hub": hub,
        "capacity": capacity,
        "stablecoin": stablecoin,
        "pool": pool,
        "nodes": nodes,
        "pooled": nodes[0],
        "offers": offers,
        "buyer": buyer,
        "payer": payer,
        "payer_start": stablecoin.balanceOf(payer),
        "terms0": terms0,
        "stakers": [staker, stranger],
        "operator": operator,
        "admin": admin,
        "settler": admin,
        "transmitter": relayer,
        "errors": errors,
        "w3": web3,
        "hub_last": hub.lastAttestedEpoch(),
        "draw_epoch": pool.draw()[1],
        "config_version": hub.configVersion(),
        "epoch_seconds": hub.epochLengthSeconds(),
        "tenor": pool.terms()[6],
        "window": settlement.dscrWindowEpochs(),
    }


def test_settlement_accounts_for_every_unit(world):
    run_machine(SettlementMachine, world, steps=8)
