"""The auction of seed 000: bids decided by a Redis Lua script, persisted by conveyor jobs.

``python -m examples.auction`` runs it all; see README.md.
"""
