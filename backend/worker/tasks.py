"""Tasks are thin: take an id, call service code, own only the retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from celery import Celery, Task, shared_task
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from backend.db.models import ActionStatus
from backend.db.session import DATABASE_ERRORS, database_reason
from backend.monitoring.worker import observe_index
from backend.services.claims import claimed
from backend.services.errors import (
    ActionNotFound,
    ChainUnavailable,
    DatabaseUnavailable,
    NonceLockTimeout,
    WrongChain,
)
from backend.services.health import record_keeper_progress, record_reopened
from backend.services.indexing.indexer import ConcurrentIndexer, ReorgDuringBatch
from backend.services.keepers.cadence import Cadence
from backend.services.keepers.defaults import plan_defaults
from backend.services.keepers.deliveries import plan_due
from backend.services.keepers.epochs import plan_epoch_settlements
from backend.services.keepers.jails import plan_jails
from backend.services.relaying.batch_sizing import BatchLimits
from backend.services.relaying.batching import BatchReverted
from backend.services.relaying.finality import review_mined
from backend.services.relaying.relay import relay_action as relay
from backend.services.relaying.relay_kick import ForwardKick
from backend.services.relaying.relayer import NonceConsumed, RelayRejected
from backend.services.relaying.sweep import sweep_stale_actions as sweep
from backend.worker.celery_app import (
    INDEX_TASK,
    RELAY_TASK,
    SETTLE_EPOCHS_TASK,
    SETTLE_TASK,
    SWEEP_TASK,
)
from backend.worker.context import context_of, indexer_of, relayer_of
from backend.worker.kinds import IN_EFFECT_CHECKS, REQUEST_BUILDERS
from gpucap.deployment import ManifestError

log = logging.getLogger(__name__)

# Backoff stays under the sweep's staleness threshold, so a row that is being
# retried (each attempt touches updated_at) is not also re-enqueued by the sweep.
# When the retries run out the row stays open and the sweep takes it up later.
# A lost database too: what failed was rolled back, and a row is recorded before its
# transaction is sent, so a retry finds it where it was left.
RETRYABLE = (
    ChainUnavailable,
    DatabaseUnavailable,
    NonceLockTimeout,
    RelayRejected,
    NonceConsumed,
    BatchReverted,
)


@shared_task(
    name=RELAY_TASK,
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=RETRYABLE,
    retry_backoff=1,
    retry_backoff_max=20,
    retry_jitter=True,
    max_retries=10,
)
def relay_action(self: Task, action_id: str) -> str:
    """Send the action's transaction (or check the one already sent) and record the outcome.
    Forward actions go out in batches: this task may send (and finish) many."""
    ctx = context_of(self.app)
    limits = BatchLimits(
        max_requests=ctx.settings.forward_batch_max_requests,
        max_gas=ctx.settings.forward_batch_max_gas,
        per_block=ctx.settings.forward_batches_per_block,
    )
    try:
        status = relay(
            sessions=ctx.sessions,
            relayer=relayer_of(self.app),
            action_id=action_id,
            limits=limits,
            builders=REQUEST_BUILDERS,
            in_effect=IN_EFFECT_CHECKS,
            kick=CeleryKick(self.app, ctx.forward_kick),
        )
    except ActionNotFound:
        log.error(
            "relay_action: action %s does not exist; dropping the message",
            action_id,
            extra={"action_id": action_id},
        )
        return "missing"
    except DATABASE_ERRORS as exc:
        reason = database_reason(exc)
        log.warning(
            "relay_action %s: database unavailable (%s); retrying",
            action_id,
            reason,
            extra={"action_id": action_id},
        )
        raise DatabaseUnavailable(f"database unavailable: {reason}") from None
    if ActionStatus(status).is_final:
        index_soon(self.app)
    elif status == ActionStatus.SUBMITTED:
        recheck_after_claim(self, action_id, ctx.settings.lease_seconds)
    return status


def recheck_after_claim(task: Task, action_id: str, lease_seconds: float) -> None:
    """The row was sent and another task holds its transaction's claim (it waits for the
    receipt and finishes every row of it). Look again once that claim would have expired
    had its holder died (a lease: claims.py): if it did (a killed worker), this re-check
    drives the row then, not at the periodic sweep's next wake-up; if the holder
    finished, the re-check finds it final; if it is still waiting, the re-check finds
    the claim held and looks again a lease later (a Redis read and a row read)."""
    countdown = lease_seconds + 1
    try:
        task.app.send_task(
            RELAY_TASK, args=[action_id], ignore_result=True, retry=False, countdown=countdown
        )
    except (OperationalError, RedisError, OSError) as exc:
        log.info(
            "relay_action: re-check of %s not sent (%s); the sweep takes it",
            action_id,
            exc,
            extra={"action_id": action_id},
        )


INDEX_SOON_EXPIRES_SECONDS = 5.0


def index_soon(app: Celery) -> None:
    """An index run now, not at the next beat: a relay task that saw its transaction
    mined (or its row already final) has news for the read API. At most the beat's
    interval sooner, at the cost of a run that may find nothing (about 15 ms) or
    another run in progress (then it returns at once and the beat catches up)."""
    try:
        app.send_task(
            INDEX_TASK, ignore_result=True, retry=False, expires=INDEX_SOON_EXPIRES_SECONDS
        )
    except (OperationalError, RedisError, OSError) as exc:
        log.info("index_soon: not sent (%s); the beat's next run indexes it", exc)


class CeleryKick:
    """``batching.Kick`` over the Redis flag and this worker's Celery app."""

    def __init__(self, app: Celery, flag: ForwardKick) -> None:
        self.app = app
        self.flag = flag

    def clear(self) -> None:
        self.flag.clear()

    def __call__(self, action_id: str, *, backlog: bool = False) -> None:
        try:  # no task if one is queued already (it claims these rows), unless a backlog
            self.flag.send_once(
                lambda: self.app.send_task(
                    RELAY_TASK, args=[action_id], ignore_result=True, retry=False
                ),
                even_if_queued=backlog,
            )
        except (OperationalError, RedisError, OSError) as exc:
            log.warning("kick for waiting forward rows failed (%s); the sweep sends them", exc)


@shared_task(name=SWEEP_TASK, bind=True, ignore_result=True)
def sweep_stale_actions(self: Task) -> list[str]:
    """Enqueue open actions that nobody has touched for ``sweep_stale_seconds``."""
    return run_sweep(self.app)


def run_sweep(app: Celery, *, older_than_seconds: float | None = None) -> list[str]:
    """Enqueue open actions untouched for ``older_than_seconds`` (default: the setting)."""
    ctx = context_of(app)
    try:
        return sweep(
            sessions=ctx.sessions,
            enqueue=lambda action_id: app.send_task(
                RELAY_TASK, args=[action_id], ignore_result=True
            ),
            older_than_seconds=(
                ctx.settings.sweep_stale_seconds
                if older_than_seconds is None
                else older_than_seconds
            ),
        )
    except DATABASE_ERRORS as exc:
        database_lost("sweep", exc)
        return []


def database_lost(task: str, exc: BaseException) -> None:
    """A periodic run met a lost database: say so (once a while, not every beat) and
    end the run; the next beat tries again."""
    _log_now_and_then(
        logging.WARNING,
        f"{task}: database unavailable ({database_reason(exc)}); the next beat retries",
    )


# Longer than any periodic run should take: a run stuck past it loses its claim. A
# worker that dies holding it frees it a lease later (Settings.lease_seconds).
PERIODIC_LOCK_SECONDS = 120


def exclusive(ctx: Any, name: str) -> AbstractContextManager[bool]:
    """One runner at a time across workers; yields False if another holds it."""
    return claimed(
        ctx.redis,
        f"gpucap:{name}",
        seconds=PERIODIC_LOCK_SECONDS,
        lease_seconds=ctx.settings.lease_seconds,
    )


@shared_task(name=INDEX_TASK, bind=True, ignore_result=True)
def index_chain(self: Task) -> str:
    """Catch the chain index up with the node, then review the mined actions: re-open
    those whose transaction a reorg took away (and send them again), mark final those
    buried deep enough (services/relaying/finality.py)."""
    ctx = context_of(self.app)
    with exclusive(ctx, "indexer") as mine:
        if not mine:
            return "busy"
        try:
            indexer = indexer_of(self.app)
            report = indexer.step()
            review = review_mined(
                ctx.sessions,
                indexer.chain,
                indexer.chain.identity(),
                confirmations=ctx.settings.action_final_confirmations,
                reorged_to=report.reorged_to,
            )
        except (ChainUnavailable, WrongChain, ManifestError) as exc:
            log.warning("index_chain: %s; will retry on the next beat", exc)
            return "unavailable"
        except DATABASE_ERRORS as exc:
            database_lost("index_chain", exc)
            return "unavailable"
        except (ReorgDuringBatch, ConcurrentIndexer) as exc:
            log.info("index_chain: %r; the next run continues", exc)
            return "retry"
    observe_index(report.head_block, report.to_block)
    record_reopened(ctx.redis, review.reopened)
    for action_id in review.reopened:
        self.app.send_task(RELAY_TASK, args=[action_id], ignore_result=True)
    return (
        f"indexed {report.from_block}..{report.to_block} ({report.events} events); "
        f"{len(review.reopened)} action(s) re-opened, {review.finalized} final"
    )


def _relay_each(app: Any) -> Callable[[str], Any]:
    """What a keeper calls with each action it planned: queue its relay task."""
    return lambda action_id: app.send_task(RELAY_TASK, args=[action_id], ignore_result=True)


def _count_reopened(ctx: Any) -> Callable[[str], None]:
    """What a keeper calls with each action a reorg re-opened (health counts them)."""
    return lambda action_id: record_reopened(ctx.redis, [action_id])


@shared_task(name=SETTLE_TASK, bind=True, ignore_result=True)
def settle_due(self: Task) -> str:
    """Plan the prove/settle actions that are due and enqueue them for the relayer."""
    ctx = context_of(self.app)
    with exclusive(ctx, "settle") as mine:
        if not mine:
            return "busy"
        try:
            with ctx.sessions() as session:
                plan = plan_due(
                    session,
                    indexer_of(self.app).chain,
                    ctx.settings.proof_sources,
                    enqueue=_relay_each(self.app),
                    on_reopen=_count_reopened(ctx),
                )
        except (ChainUnavailable, ManifestError) as exc:
            log.warning("settle_due: %s; will retry on the next beat", exc)
            return "unavailable"
        except DATABASE_ERRORS as exc:
            database_lost("settle_due", exc)
            return "unavailable"
    for reason in plan.waiting:
        log.info("settle_due: waiting: %s", reason)
    return f"{len(plan.proofs)} proof(s), {len(plan.settlements)} settlement(s) enqueued"


@shared_task(name=SETTLE_EPOCHS_TASK, bind=True, acks_late=True, ignore_result=True)
def settle_epochs(self: Task) -> str:
    """Plan the EpochSettlement batches that are due and enqueue them for the relayer;
    then the default declarations the chain says are due (``keepers.defaults``) and the
    challenge jails (``keepers.jails``).

    Idempotent (acks_late): a redelivered run finds the actions it created by key,
    and nodes with an action in flight are not planned again.
    """
    ctx = context_of(self.app)
    settings = ctx.settings
    with exclusive(ctx, "settle-epochs") as mine:
        if not mine:
            return "busy"
        try:
            with ctx.sessions() as session:
                plan = plan_epoch_settlements(
                    session,
                    indexer_of(self.app).chain,
                    settings.proof_sources,
                    sender=relayer_of(self.app).sender,
                    max_batch_gas=settings.epoch_settle_max_batch_gas,
                    retry_after_seconds=settings.epoch_settle_retry_seconds,
                    cadence=Cadence(
                        min_epochs=settings.epoch_settle_min_epochs,
                        max_delay_seconds=settings.epoch_settle_max_delay_seconds,
                        loan_epochs=settings.epoch_settle_loan_epochs,
                    ),
                    enqueue=_relay_each(self.app),
                    on_reopen=_count_reopened(ctx),
                )
                # After the settlements: a loan whose settlement left it due for default
                # is declared (the contract lets anyone; nobody else is bound to).
                defaults = plan_defaults(
                    session,
                    indexer_of(self.app).chain,
                    retry_after_seconds=settings.epoch_settle_retry_seconds,
                    enqueue=_relay_each(self.app),
                    on_reopen=_count_reopened(ctx),
                )
                # A node whose attested leaves show failed challenges in enough recent
                # epochs is jailed (ChallengeJail lets anyone; nobody else is bound to).
                jails = plan_jails(
                    session,
                    indexer_of(self.app).chain,
                    retry_after_seconds=settings.epoch_settle_retry_seconds,
                    enqueue=_relay_each(self.app),
                    on_reopen=_count_reopened(ctx),
                )
        except (ChainUnavailable, ManifestError) as exc:
            log.warning("settle_epochs: %s; will retry on the next beat", exc)
            return "unavailable"
        except DATABASE_ERRORS as exc:
            database_lost("settle_epochs", exc)
            return "unavailable"
    record_keeper_progress(ctx.redis, plan)
    for reason in plan.rejected:
        _log_now_and_then(logging.WARNING, f"settle_epochs: rejected: {reason}")
    for node, why in plan.settling.items():
        _log_now_and_then(logging.INFO, f"settle_epochs: settling: node {node}: {why}")
    for reason in plan.waiting + defaults.waiting + jails.waiting:
        _log_now_and_then(logging.INFO, f"settle_epochs: waiting: {reason}")
    for reason in defaults.done + jails.done:
        _log_now_and_then(logging.INFO, f"settle_epochs: done: {reason}")
    return (
        f"{len(plan.actions)} settlement batch(es), "
        f"{len(defaults.actions)} default declaration(s), "
        f"{len(jails.actions)} jail call(s) enqueued"
    )


# The same reason (a forged file, a node waiting for its payer) comes back every run:
# say it at its level once every REPEAT_LOG_SECONDS, at DEBUG in between.
REPEAT_LOG_SECONDS = 600.0
_last_logged: dict[str, float] = {}


def _log_now_and_then(level: int, text: str) -> None:
    now = time.monotonic()
    if now - _last_logged.get(text, -REPEAT_LOG_SECONDS) < REPEAT_LOG_SECONDS:
        level = logging.DEBUG
    else:
        _last_logged[text] = now
        if len(_last_logged) > 10_000:  # bounded: forget the oldest half
            for key in sorted(_last_logged, key=_last_logged.__getitem__)[:5_000]:
                del _last_logged[key]
    log.log(level, "%s", text)
