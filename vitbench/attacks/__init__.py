"""Attacks: the PGD family (L-inf, L2, patch-restricted), the AutoAttack adapter, optional-extra adapters."""
