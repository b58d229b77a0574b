"""What both daemons stand on: configuration (``runtime.config``), and the process, metrics, logging and
event-loop plumbing that the key server and the edge share. Nothing here knows about keys, TLS
handshakes or the keyless protocol."""
