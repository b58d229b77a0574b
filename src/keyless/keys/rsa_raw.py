"""The raw RSA private-key operation (c^d mod n, no padding) that opcode 0x01 needs.

``cryptography`` offers RSA decryption only with padding removed (PKCS#1 v1.5 or OAEP), but the
keyless protocol returns the raw k-byte block and lets the edge strip the padding in constant time.
Measured on the project machine (RSA-2048, one core):

- OpenSSL's ``EVP_PKEY_decrypt`` with ``RSA_NO_PADDING`` through ``ctypes``: 0.23 ms, the same as
  ``cryptography``'s own signing; OpenSSL uses CRT, base blinding and constant-time modular
  exponentiation, and ``ctypes.CDLL`` releases the GIL for the call, so a thread pool scales.
- Python's ``pow`` with CRT: 5.6 ms (without CRT 18 ms), holds the GIL, and its running time
  depends on the operands.

So the OpenSSL path is used whenever the system's ``libcrypto`` (OpenSSL 3) can be loaded. The
fallback (``_PythonRawRSA``) exists only so the server still works without it: it blinds the base
with a fresh random ``r`` (so the time does not depend on the attacker's ciphertext) and
randomises the CRT exponents with a multiple of ``p-1``/``q-1`` per call, and logs a warning at
start-up because it is slow and not constant-time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import secrets
import threading
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

_RSA_NO_PADDING = 3


class RawRSAError(Exception):
    """The raw RSA operation refused its input (wrong length, not below the modulus, or OpenSSL failed)."""


class RawRSA(Protocol):
    def private_op(self, block: bytes) -> bytes:
        """block^d mod n as k bytes; ``block`` must be exactly k bytes and below n."""
        ...


class _LibCrypto:
    """The handful of OpenSSL 3 functions the raw operation needs, typed for ctypes."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp = ctypes.c_void_p
        lib.d2i_AutoPrivateKey.restype = vp
        lib.d2i_AutoPrivateKey.argtypes = [vp, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
        lib.EVP_PKEY_CTX_new.restype = vp
        lib.EVP_PKEY_CTX_new.argtypes = [vp, vp]
        lib.EVP_PKEY_decrypt_init.restype = ctypes.c_int
        lib.EVP_PKEY_decrypt_init.argtypes = [vp]
        lib.EVP_PKEY_CTX_set_rsa_padding.restype = ctypes.c_int
        lib.EVP_PKEY_CTX_set_rsa_padding.argtypes = [vp, ctypes.c_int]
        lib.EVP_PKEY_decrypt.restype = ctypes.c_int
        size_p = ctypes.POINTER(ctypes.c_size_t)
        lib.EVP_PKEY_decrypt.argtypes = [vp, ctypes.c_char_p, size_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.EVP_PKEY_CTX_free.restype = None
        lib.EVP_PKEY_CTX_free.argtypes = [vp]
        lib.EVP_PKEY_free.restype = None
        lib.EVP_PKEY_free.argtypes = [vp]
        lib.ERR_clear_error.restype = None
        lib.ERR_clear_error.argtypes = []
        self.lib = lib


_libcrypto: _LibCrypto | None = None
_libcrypto_tried = False
_libcrypto_lock = threading.Lock()


def _load_libcrypto() -> _LibCrypto | None:
    global _libcrypto, _libcrypto_tried
    with _libcrypto_lock:
        if not _libcrypto_tried:
            _libcrypto_tried = True
            for name in ("libcrypto.so.3", ctypes.util.find_library("crypto")):
                if not name:
                    continue
                try:
                    _libcrypto = _LibCrypto(ctypes.CDLL(name))
                    break
                except (OSError, AttributeError):
                    continue
            if _libcrypto is None:
                log.warning(
                    "OpenSSL 3 libcrypto not found: RSA decryption falls back to a slow pure-Python "
                    "implementation (install libssl3 for constant-time, fast RSA)"
                )
        return _libcrypto


class _OpenSSLRawRSA:
    """An EVP_PKEY in the system's libcrypto holding the key; freed with this object."""

    __slots__ = ("__weakref__", "_k", "_lib", "_n", "_pkey")

    def __init__(self, lib: _LibCrypto, key: rsa.RSAPrivateKey) -> None:
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        cursor = ctypes.c_char_p(der)
        pkey = lib.lib.d2i_AutoPrivateKey(None, ctypes.byref(cursor), len(der))
        del der, cursor
        if not pkey:
            lib.lib.ERR_clear_error()
            raise RawRSAError("OpenSSL could not load the RSA key")
        self._lib = lib
        self._pkey: int = pkey
        self._n = key.public_key().public_numbers().n
        self._k = (key.key_size + 7) // 8

    def __repr__(self) -> str:
        return f"<OpenSSL raw RSA-{self._k * 8}>"

    def __del__(self) -> None:
        pkey = getattr(self, "_pkey", 0)
        if pkey:
            self._lib.lib.EVP_PKEY_free(pkey)
            self._pkey = 0

    def private_op(self, block: bytes) -> bytes:
        k = self._k
        if len(block) != k:
            raise RawRSAError(f"input of {len(block)} bytes, the modulus has {k}")
        if int.from_bytes(block, "big") >= self._n:
            raise RawRSAError("input is not below the modulus")
        lib = self._lib.lib
        ctx = lib.EVP_PKEY_CTX_new(self._pkey, None)
        if not ctx:
            lib.ERR_clear_error()
            raise RawRSAError("OpenSSL could not allocate a key context")
        try:
            out = ctypes.create_string_buffer(k)
            out_len = ctypes.c_size_t(k)
            if (
                lib.EVP_PKEY_decrypt_init(ctx) != 1
                or lib.EVP_PKEY_CTX_set_rsa_padding(ctx, _RSA_NO_PADDING) <= 0
                or lib.EVP_PKEY_decrypt(ctx, out, ctypes.byref(out_len), block, k) != 1
            ):
                lib.ERR_clear_error()
                raise RawRSAError("OpenSSL raw RSA operation failed")
            result = out.raw[: out_len.value]
            ctypes.memset(out, 0, k)  # the result of a decrypt is a premaster block: do not leave copies about
        finally:
            lib.EVP_PKEY_CTX_free(ctx)
        return result.rjust(k, b"\x00")


class _PythonRawRSA:
    """Fallback: CRT with base blinding and randomised exponents, in pure Python (slow; holds the GIL)."""

    __slots__ = ("_dp", "_dq", "_e", "_k", "_n", "_p", "_q", "_qinv")

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        numbers = key.private_numbers()
        self._n = numbers.public_numbers.n
        self._e = numbers.public_numbers.e
        self._p, self._q = numbers.p, numbers.q
        self._dp, self._dq, self._qinv = numbers.dmp1, numbers.dmq1, numbers.iqmp
        self._k = (key.key_size + 7) // 8

    def __repr__(self) -> str:
        return f"<pure-Python raw RSA-{self._k * 8}>"

    def private_op(self, block: bytes) -> bytes:
        k, n = self._k, self._n
        if len(block) != k:
            raise RawRSAError(f"input of {len(block)} bytes, the modulus has {k}")
        c = int.from_bytes(block, "big")
        if c >= n:
            raise RawRSAError("input is not below the modulus")
        while True:
            r = secrets.randbelow(n - 2) + 2
            try:
                r_inv = pow(r, -1, n)
                break
            except ValueError:  # r shares a factor with n: astronomically unlikely, draw again
                continue
        blinded = (c * pow(r, self._e, n)) % n
        p, q = self._p, self._q
        dp = self._dp + secrets.randbits(64) * (p - 1)
        dq = self._dq + secrets.randbits(64) * (q - 1)
        m1 = pow(blinded, dp, p)
        m2 = pow(blinded, dq, q)
        h = (self._qinv * (m1 - m2)) % p
        m = ((m2 + h * q) * r_inv) % n
        return m.to_bytes(k, "big")


def raw_rsa_for(key: rsa.RSAPrivateKey) -> RawRSA:
    """The fastest safe raw RSA implementation available for ``key``."""
    lib = _load_libcrypto()
    if lib is not None:
        return _OpenSSLRawRSA(lib, key)
    return _PythonRawRSA(key)


def python_raw_rsa_for(key: rsa.RSAPrivateKey) -> RawRSA:
    """The pure-Python fallback, for tests that check it against OpenSSL."""
    return _PythonRawRSA(key)
