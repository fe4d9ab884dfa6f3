"""Advantage estimators and policy losses: small, pure functions."""
