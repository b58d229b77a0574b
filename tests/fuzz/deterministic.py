"""Deterministic mode for the engine targets (BoringSSL's BORINGSSL_UNSAFE_DETERMINISTIC_MODE idea).

A recorded client flight replays past the ServerHello only if the server makes the same choices it made
while recording: the same random (``ServerConfig.random_bytes``, set by the targets), the same ephemeral
ECDHE keys and the same signatures. This module swaps the ``x25519`` and ``ec`` names inside
``keyless.tls.suites`` and ``keyless.tls.tls12_suites`` for wrappers whose key generation returns fixed keys
(everything else is the real module), and signs ECDSA key operations with RFC 6979 deterministic nonces.
Only fuzz processes call ``install``; the engine's code is untouched.
"""

from __future__ import annotations

import types
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from keyless.keys.schemes import SignatureScheme, scheme_hash
from keyless.tls.events import KeyOperationRequired

_FIXED_X25519 = x25519.X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
_FIXED_EC: dict[str, ec.EllipticCurvePrivateKey] = {}


class _X25519PrivateKey:
    @staticmethod
    def generate() -> x25519.X25519PrivateKey:
        return _FIXED_X25519


def _generate_private_key(curve: ec.EllipticCurve, backend: Any = None) -> ec.EllipticCurvePrivateKey:
    key = _FIXED_EC.get(curve.name)
    if key is None:
        key = _FIXED_EC[curve.name] = ec.derive_private_key(0xEC0 + curve.key_size, curve)
    return key


def _wrap(module: types.ModuleType, **overrides: Any) -> types.ModuleType:
    wrapper = types.ModuleType(module.__name__)
    wrapper.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    wrapper.__dict__.update(overrides)
    return wrapper


def install() -> None:
    from keyless.tls import suites, tls12_suites

    x25519_shim = _wrap(x25519, X25519PrivateKey=_X25519PrivateKey)
    ec_shim = _wrap(ec, generate_private_key=_generate_private_key)
    for module in (suites, tls12_suites):
        module.x25519 = x25519_shim  # type: ignore[attr-defined]
        module.ec = ec_shim  # type: ignore[attr-defined]
    # isinstance checks in the engine must still see the real classes.
    x25519_shim.X25519PrivateKey = _X25519Class  # type: ignore[attr-defined]


class _X25519Meta(type):
    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, x25519.X25519PrivateKey)


class _X25519Class(metaclass=_X25519Meta):
    generate = staticmethod(_X25519PrivateKey.generate)


def answer(event: KeyOperationRequired) -> bytes | BaseException:
    """What the adapter does with a local key, with deterministic ECDSA (RFC 6979) so replays match."""
    try:
        key: Any = event.key
        private = getattr(key, "_key", None)  # LocalKey's private key
        if event.kind == "decrypt":
            return bytes(key.decrypt_sync(event.data))
        assert event.scheme is not None
        if isinstance(private, ec.EllipticCurvePrivateKey):
            algorithm = scheme_hash(SignatureScheme(event.scheme))
            assert algorithm is not None
            return private.sign(event.data, ec.ECDSA(algorithm, deterministic_signing=True))
        return bytes(key.sign_sync(event.scheme, event.data))
    except Exception as exc:  # the key refused: the engine gets the error, as from the adapter
        return exc
