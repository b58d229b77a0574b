"""The keyless client: pooled, pipelined key operations on key servers, with failover.

    ssl_context = make_ssl_context("edge.pem", "edge-key.pem", "ca.pem")
    async with KeylessClient(["ks1.example:2407", "ks2.example:2407"], ssl_context) as client:
        key = client.remote_key(certificate)          # keyless.keys.base.AsyncPrivateKey
        signature = await key.sign(SignatureScheme.ECDSA_SECP256R1_SHA256, message)

Layers (h11/aioquic shape): ``core`` is the sans-IO ID correlation and framing of one connection;
``connection`` drives it over an asyncio TLS transport; ``endpoint`` pools connections to one address;
``client`` picks endpoints, retries and checks health; ``remote_key`` is a key on key servers (an
``AsyncPrivateKey``) made by ``KeylessClient.remote_key``.
"""

from keyless.client.client import ClientTLS, KeylessClient, ServerAddress, make_ssl_context
from keyless.client.core import Answer, ClientConnection, Request
from keyless.client.endpoint import EndpointStats
from keyless.client.errors import (
    BadOpcodeError,
    CertificateNotFoundError,
    ConnectFailed,
    ConnectionLost,
    ConnectTimeout,
    CryptoError,
    ExpiredError,
    FormatError,
    InternalError,
    KeylessClientError,
    KeyNotFoundError,
    KeyServerError,
    NoServerAvailable,
    OperationTimeout,
    OverloadedError,
    ReadError,
    RemoteConfigurationError,
    ResponseError,
    UnexpectedOpcodeError,
    VersionMismatchError,
    error_for_code,
)
from keyless.client.remote_key import OperationContext, RemoteKey, opcode_for
from keyless.client.resilience import EjectionPolicy, HedgePolicy

__all__ = [
    "Answer",
    "BadOpcodeError",
    "CertificateNotFoundError",
    "ClientConnection",
    "ClientTLS",
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionLost",
    "CryptoError",
    "EjectionPolicy",
    "EndpointStats",
    "ExpiredError",
    "FormatError",
    "HedgePolicy",
    "InternalError",
    "KeyNotFoundError",
    "KeyServerError",
    "KeylessClient",
    "KeylessClientError",
    "NoServerAvailable",
    "OperationContext",
    "OperationTimeout",
    "OverloadedError",
    "ReadError",
    "RemoteConfigurationError",
    "RemoteKey",
    "Request",
    "ResponseError",
    "ServerAddress",
    "UnexpectedOpcodeError",
    "VersionMismatchError",
    "error_for_code",
    "make_ssl_context",
    "opcode_for",
]
