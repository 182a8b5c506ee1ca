"""Which transaction each kind of single action sends: kind -> request builder (and, for
a kind others may carry out first, kind -> its in-effect check).

The worker assembles this table because it is the one part that knows every kind:
the rows' store and the transaction driver stay ignorant of the keepers and the
faucet, and those import the store (to create their rows) without a circle. Forward
actions are not here: they go out many per transaction (relaying's batching).
"""

from __future__ import annotations

from backend.db.models import ActionKind
from backend.services.keepers.defaults import declare_default_tx
from backend.services.keepers.deliveries import prove_tx, settle_tx
from backend.services.keepers.jails import jail_node_tx
from backend.services.keepers.settle_batches import settle_epoch_tx
from backend.services.market.permits import permit_in_effect, permit_tx
from backend.services.relaying.faucet import drip_request
from backend.services.relaying.relayer import InEffectCheck, RequestBuilder

REQUEST_BUILDERS: dict[str, RequestBuilder] = {
    ActionKind.FAUCET.value: lambda chain, params: drip_request(chain, params["address"]),
    ActionKind.PROVE_DELIVERY.value: prove_tx,
    ActionKind.SETTLE_RESERVATION.value: settle_tx,
    ActionKind.SETTLE_EPOCH.value: settle_epoch_tx,
    ActionKind.DECLARE_DEFAULT.value: declare_default_tx,
    ActionKind.PERMIT.value: permit_tx,
    ActionKind.JAIL_NODE.value: jail_node_tx,
}
IN_EFFECT_CHECKS: dict[str, InEffectCheck] = {ActionKind.PERMIT.value: permit_in_effect}
