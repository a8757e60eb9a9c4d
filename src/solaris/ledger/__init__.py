"""Balances: reserve, settle, release, expire; users and their keys."""
