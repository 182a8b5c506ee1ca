"""Runtime library shared by gpucap's backend and oracle.

It talks to the chain through web3.py and the compiled artifacts named in a
deployment manifest; it never imports brownie (that stays in scripts/ and tests/).
"""
