import brownie
import pytest
from brownie import chain

from tests.support.errors import err

USD = 10**6


class TestDrip:
    def test_mints_drip_amount_and_emits(self, stablecoin, stranger, buyer):
        tx = stablecoin.drip(buyer, {"from": stranger})
        assert stablecoin.balanceOf(buyer) == 1_000 * USD
        assert tx.events["Dripped"]["recipient"] == buyer
        assert tx.events["Dripped"]["amount"] == 1_000 * USD
        assert tx.events["Dripped"]["nextDripAt"] == tx.timestamp + 3600
        assert stablecoin.nextDripAt(buyer) == tx.timestamp + 3600

    def test_second_drip_within_cooldown_reverts(self, stablecoin, buyer):
        tx = stablecoin.drip(buyer, {"from": buyer})
        with brownie.reverts(err("FaucetCooldown", buyer, tx.timestamp + 3600)):
            stablecoin.drip(buyer, {"from": buyer})

    def test_drip_after_cooldown(self, stablecoin, buyer):
        stablecoin.drip(buyer, {"from": buyer})
        chain.sleep(3601)
        stablecoin.drip(buyer, {"from": buyer})
        assert stablecoin.balanceOf(buyer) == 2_000 * USD

    def test_cooldown_is_per_recipient(self, stablecoin, buyer, staker):
        stablecoin.drip(buyer, {"from": buyer})
        stablecoin.drip(staker, {"from": buyer})
        assert stablecoin.balanceOf(staker) == 1_000 * USD

    def test_zero_recipient_reverts(self, stablecoin, buyer):
        with brownie.reverts(err("FaucetInvalidRecipient")):
            stablecoin.drip(brownie.ZERO_ADDRESS, {"from": buyer})


class TestConfigureFaucet:
    def test_admin_configures(self, stablecoin, admin):
        tx = stablecoin.configureFaucet(5 * USD, 60, {"from": admin})
        assert dict(tx.events["FaucetConfigured"]) == {"dripAmount": 5 * USD, "cooldownSeconds": 60}
        assert stablecoin.dripAmount() == 5 * USD
        assert stablecoin.cooldownSeconds() == 60

    @pytest.mark.parametrize("amount,cooldown", [(0, 60), (5, 0)])
    def test_zero_values_revert(self, stablecoin, admin, amount, cooldown):
        with brownie.reverts(err("FaucetInvalidConfig", amount, cooldown)):
            stablecoin.configureFaucet(amount, cooldown, {"from": admin})

    def test_non_admin_reverts(self, stablecoin, stranger):
        with brownie.reverts():
            stablecoin.configureFaucet(5, 60, {"from": stranger})


class TestErc20:
    def test_decimals_and_metadata(self, stablecoin):
        assert stablecoin.decimals() == 6
        assert stablecoin.symbol() == "tUSD"

    def test_permit_sets_allowance(self, stablecoin, buyer, staker):
        from eth_account import Account
        from eth_account.messages import encode_typed_data

        from gpucap import devchain

        key = devchain.dev_private_key(3)  # buyer is accounts[3]
        deadline = chain.time() + 3600
        typed = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": {
                "name": "gpucap Test USD",
                "version": "1",
                "chainId": chain.id,
                "verifyingContract": stablecoin.address,
            },
            "message": {
                "owner": buyer.address,
                "spender": staker.address,
                "value": 7 * USD,
                "nonce": stablecoin.nonces(buyer),
                "deadline": deadline,
            },
        }
        sig = Account.sign_message(encode_typed_data(full_message=typed), key)
        stablecoin.permit(buyer, staker, 7 * USD, deadline, sig.v, sig.r, sig.s, {"from": staker})
        assert stablecoin.allowance(buyer, staker) == 7 * USD
