"""Wallets: the deposit addresses the desk controls."""
