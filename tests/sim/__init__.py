"""Seeded simulation of a Raft cluster (see ``tests/sim/sim.py``); ``python -m tests.sim``."""
