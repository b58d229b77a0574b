"""What both daemons stand on: configuration (``runtime.config``), process supervision, metrics, logging and
the event loop.

Each chore is written once here; ``keyless.server`` and ``keyless.edge`` only describe what is theirs. Nothing
here knows about keys, TLS handshakes or the keyless protocol.
"""
