"""What both daemons stand on: configuration, process supervision, metrics, logging, the event loop.

Each chore is written once here; ``keyless.server`` and ``keyless.edge`` only describe what is theirs.
"""
