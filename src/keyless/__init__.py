"""keyless: Keyless SSL in Python.

The edge terminates TLS and holds only certificates; the one private-key operation of a
handshake is sent to a key server on the key owner's premises.
"""

__version__ = "0.1.0"
