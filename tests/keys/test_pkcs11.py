"""The PKCS#11 key store against a real SoftHSM2 token: every opcode on every key type, each result
checked with ``cryptography``; PIN handling; errors; reconnection; and a real key-server process
answering a client from keys that live only in the token."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyless.keys.loader import KeySource, load_keys
from keyless.keys.operations import OPERATIONS, OperationError, PrivateKey
from keyless.keys.pkcs11_uri import Pkcs11Uri, parse_pkcs11_uri
from keyless.keys.ski import ski_of
from keyless.keys.store import InMemoryKeyStore, LocalKeyHandle
from keyless.pki import DemoPKI, create_demo_pki
from keyless.protocol import ErrorCode, Opcode
from keyless.server.config import load_config
from tests.conftest import REQUIRE_ALL, require_tool
from tests.support.keyserver import start_keyserver
from tests.support.verify import payload_for, verify
from tests.support.waiting import wait_until

try:
    import pkcs11
except ImportError:  # the optional 'hsm' extra; CI (KEYLESS_REQUIRE_ALL=1) must have it
    if REQUIRE_ALL:
        raise
    pytest.skip("python-pkcs11 is not installed (pip install 'keyless[hsm]')", allow_module_level=True)
from pkcs11 import Attribute, KeyType, ObjectClass

from keyless.keys import pkcs11 as backend

pytestmark = pytest.mark.timeout(60)

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "8642-user-pin"
SO_PIN = "97531-so-pin"
TOKEN = "keyless-test"

_CURVE_OIDS = {"secp256r1": "06082a8648ce3d030107", "secp384r1": "06052b81040022", "secp521r1": "06052b81040023"}


def _octet_string(data: bytes) -> bytes:
    if len(data) < 0x80:
        return b"\x04" + bytes([len(data)]) + data
    return b"\x04\x81" + bytes([len(data)]) + data


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def import_key(session: Any, key: PrivateKey, label: str, key_id: bytes, *, public_object: bool = True,
               always_authenticate: bool = False) -> None:
    """Store ``key`` on the token as a sensitive private-key object (and its public-key object)."""
    common = {Attribute.TOKEN: True, Attribute.LABEL: label, Attribute.ID: key_id}
    private: dict[Attribute, Any] = {**common, Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.PRIVATE: True,
                                     Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                                     Attribute.ALWAYS_AUTHENTICATE: always_authenticate}
    public: dict[Attribute, Any] = {**common, Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.VERIFY: True}
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        private.update({
            Attribute.KEY_TYPE: KeyType.RSA, Attribute.DECRYPT: True,
            Attribute.MODULUS: _int_bytes(n.public_numbers.n),
            Attribute.PUBLIC_EXPONENT: _int_bytes(n.public_numbers.e),
            Attribute.PRIVATE_EXPONENT: _int_bytes(n.d), Attribute.PRIME_1: _int_bytes(n.p),
            Attribute.PRIME_2: _int_bytes(n.q), Attribute.EXPONENT_1: _int_bytes(n.dmp1),
            Attribute.EXPONENT_2: _int_bytes(n.dmq1), Attribute.COEFFICIENT: _int_bytes(n.iqmp),
        })
        public.update({Attribute.KEY_TYPE: KeyType.RSA, Attribute.MODULUS: _int_bytes(n.public_numbers.n),
                       Attribute.PUBLIC_EXPONENT: _int_bytes(n.public_numbers.e)})
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        params = bytes.fromhex(_CURVE_OIDS[key.curve.name])
        size = (key.curve.key_size + 7) // 8
        point = key.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
        private.update({Attribute.KEY_TYPE: KeyType.EC, Attribute.EC_PARAMS: params,
                        Attribute.VALUE: key.private_numbers().private_value.to_bytes(size, "big")})
        public.update({Attribute.KEY_TYPE: KeyType.EC, Attribute.EC_PARAMS: params,
                       Attribute.EC_POINT: _octet_string(point)})
    else:
        params = bytes.fromhex("06032b6570")
        raw_private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
        raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        private.update({Attribute.KEY_TYPE: KeyType.EC_EDWARDS, Attribute.EC_PARAMS: params,
                        Attribute.VALUE: raw_private})
        public.update({Attribute.KEY_TYPE: KeyType.EC_EDWARDS, Attribute.EC_PARAMS: params,
                       Attribute.EC_POINT: _octet_string(raw_public)})
    session.create_object(private)
    if public_object:
        session.create_object(public)


@dataclass
class SoftHSM:
    directory: Path
    keys: dict[str, PrivateKey]
    token_generated: ec.EllipticCurvePublicKey

    def uri(self, query: str = f"pin-value={PIN}", path: str = f"token={TOKEN}") -> str:
        return f"pkcs11:{path}?module-path={MODULE}" + (f"&{query}" if query else "")

    def store(self, uri: str) -> tuple[InMemoryKeyStore, list[str]]:
        parsed = parse_pkcs11_uri(uri)
        report = load_keys([KeySource("uri", Path(MODULE), parsed)])
        return report.store, [str(p) for p in report.problems]


def init_token(directory: Path, label: str) -> None:
    util = require_tool("softhsm2-util", "softhsm2")
    if not Path(MODULE).exists():
        pytest.fail(f"softhsm2-util is installed but {MODULE} is missing")
    (directory / "tokens").mkdir(parents=True)
    (directory / "softhsm2.conf").write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(directory / "softhsm2.conf")}
    subprocess.run([util, "--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", PIN],
                   check=True, capture_output=True, env=env)


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    directory = tmp_path_factory.mktemp("softhsm")
    init_token(directory, TOKEN)
    keys: dict[str, PrivateKey] = {
        "rsa-2048": rsa.generate_private_key(65537, 2048),
        "ecdsa-p256": ec.generate_private_key(ec.SECP256R1()),
        "ecdsa-p384": ec.generate_private_key(ec.SECP384R1()),
        "ecdsa-p521": ec.generate_private_key(ec.SECP521R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    util_key = rsa.generate_private_key(65537, 3072)  # imported with softhsm2-util, the operator's tool
    pem = directory / "util-key.pem"
    pem.write_bytes(util_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(directory / "softhsm2.conf"))  # the key-server child inherits it
        subprocess.run([require_tool("softhsm2-util", "softhsm2"), "--import", str(pem), "--token", TOKEN,
                        "--label", "rsa-3072-util", "--id", "f0f0", "--pin", PIN], check=True, capture_output=True)
        pem.unlink()
        keys["rsa-3072-util"] = util_key
        lib = pkcs11.lib(MODULE)
        lib.reinitialize()  # SoftHSM reads its configuration at C_Initialize
        token = lib.get_token(token_label=TOKEN)
        with token.open(rw=True, user_pin=PIN) as session:
            for index, (name, key) in enumerate(keys.items()):
                if name != "rsa-3072-util":
                    import_key(session, key, name, bytes([0x10 + index]))
            public, _ = session.generate_keypair(KeyType.EC, 0, store=True, label="generated-p256", id=b"\x99",
                                                 public_template={Attribute.EC_PARAMS: bytes.fromhex(
                                                     _CURVE_OIDS["secp256r1"])})
            point = bytes(public[Attribute.EC_POINT])[2:]
            generated = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        backend.close_all_tokens()
        yield SoftHSM(directory, keys, generated)
        backend.close_all_tokens()


def test_every_key_on_the_token_is_indexed_by_its_ski(softhsm: SoftHSM) -> None:
    store, problems = softhsm.store(softhsm.uri())
    assert problems == []
    expected = {ski_of(k.public_key()) for k in softhsm.keys.values()} | {ski_of(softhsm.token_generated)}
    assert {h.ski for h in store} == expected
    rsa_key = softhsm.keys["rsa-2048"]
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    handle = store.find(ski_of(rsa_key.public_key()))
    assert handle is not None and handle.offload and "object=rsa-2048" in handle.source
    assert store.find_by_digest(LocalKeyHandle(rsa_key, "x").legacy_digest or b"") is handle


CASES = [(name, opcode) for name in ("rsa-2048", "rsa-3072-util", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521",
                                     "ed25519") for opcode in sorted(OPERATIONS)]


def test_every_opcode_against_every_key_type(softhsm: SoftHSM) -> None:
    store, _ = softhsm.store(softhsm.uri())
    checked = 0
    for name, opcode in CASES:
        key = softhsm.keys[name]
        handle = store.find(ski_of(key.public_key()))
        assert handle is not None, name
        local = LocalKeyHandle(key, name)
        if OPERATIONS[opcode].kind is not handle.kind:
            with pytest.raises(OperationError) as caught:
                handle.execute(opcode, b"\x00" * 32)
            assert caught.value.code == ErrorCode.CRYPTO_FAILED
            continue
        payload = payload_for(opcode, key)
        result = handle.execute(opcode, payload)
        verify(opcode, key, payload, result)
        op = OPERATIONS[opcode]
        if op.action.value in ("rsa-pkcs1", "ed25519", "rsa-decrypt"):  # deterministic: byte for byte
            assert result == local.execute(opcode, payload), (name, Opcode(opcode).name)
        checked += 1
    assert checked == 2 * 11 + 3 * 6 + 1  # 11 RSA opcodes per RSA key, 6 ECDSA per curve, Ed25519


def test_key_generated_on_the_token_signs(softhsm: SoftHSM) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import utils

    store, _ = softhsm.store(softhsm.uri(path=f"token={TOKEN};object=generated-p256"))
    assert len(store) == 1
    handle = store.find(ski_of(softhsm.token_generated))
    assert handle is not None
    digest = os.urandom(32)
    signature = handle.execute(Opcode.ECDSA_SIGN_SHA256, digest)
    softhsm.token_generated.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_keys_that_always_authenticate_get_a_context_login_per_use(softhsm: SoftHSM) -> None:
    backend.close_all_tokens()  # log the pool out so this test can log in to write
    token = pkcs11.lib(MODULE).get_token(token_label=TOKEN)
    key = rsa.generate_private_key(65537, 2048)
    with token.open(rw=True, user_pin=PIN) as session:
        import_key(session, key, "always-auth", b"\xaa", always_authenticate=True)
    try:
        store, problems = softhsm.store(softhsm.uri(path=f"token={TOKEN};object=always-auth"))
        assert problems == [] and len(store) == 1
        handle = store.find(ski_of(key.public_key()))
        assert handle is not None
        for opcode in (Opcode.RSA_SIGN_SHA256, Opcode.RSA_PSS_SIGN_SHA384, Opcode.RSA_DECRYPT_RAW):
            payload = payload_for(opcode, key)
            verify(opcode, key, payload, handle.execute(opcode, payload))
    finally:
        backend.close_all_tokens()
        with token.open(rw=True, user_pin=PIN) as session:
            for obj in list(session.get_objects({Attribute.LABEL: "always-auth"})):
                obj.destroy()


def test_bad_input_answers_crypto_failed(softhsm: SoftHSM) -> None:
    store, _ = softhsm.store(softhsm.uri())
    rsa_key = softhsm.keys["rsa-2048"]
    handle = store.find(ski_of(rsa_key.public_key()))
    assert handle is not None
    n = rsa_key.public_key().public_numbers().n  # type: ignore[union-attr]
    for bad in (b"", bytes(255), bytes(257), n.to_bytes(256, "big"), b"\xff" * 256):
        with pytest.raises(OperationError) as caught:
            handle.execute(Opcode.RSA_DECRYPT, bad)
        assert caught.value.code == ErrorCode.CRYPTO_FAILED
    for size in (0, 31, 33):
        with pytest.raises(OperationError) as caught:
            handle.execute(Opcode.RSA_SIGN_SHA256, bytes(size))
        assert caught.value.code == ErrorCode.CRYPTO_FAILED
    with pytest.raises(OperationError) as caught:
        handle.execute(Opcode.PING, b"")
    assert caught.value.code == ErrorCode.BAD_OPCODE


def initialised_token_labels() -> list[str]:
    return [
        slot.get_token().label
        for slot in pkcs11.lib(MODULE).get_slots(token_present=True)
        if slot.get_token().flags & pkcs11.TokenFlag.TOKEN_INITIALIZED
    ]


def test_object_and_id_select_keys(softhsm: SoftHSM) -> None:
    # Without token=, object= needs a single initialised token. The module shares one SoftHSM directory and the
    # key-server tests below add tokens to it, so which case holds depends on the test order: check the rule
    # for the case at hand (both are right answers).
    store, problems = softhsm.store(softhsm.uri(path="object=ecdsa-p256"))
    if initialised_token_labels() == [TOKEN]:
        assert problems == [] and [h.ski for h in store] == [ski_of(softhsm.keys["ecdsa-p256"].public_key())]
    else:
        assert len(store) == 0 and "tokens match; add token=" in problems[0], problems
    store, _ = softhsm.store(softhsm.uri(path=f"token={TOKEN};object=ecdsa-p384"))
    assert [h.ski for h in store] == [ski_of(softhsm.keys["ecdsa-p384"].public_key())]
    store, _ = softhsm.store(softhsm.uri(path=f"token={TOKEN};id=%f0%f0"))
    assert [h.ski for h in store] == [ski_of(softhsm.keys["rsa-3072-util"].public_key())]
    store, problems = softhsm.store(softhsm.uri(path=f"token={TOKEN};object=no-such-key"))
    assert len(store) == 0 and "no private key object matches" in problems[0]


def test_pin_from_file_and_environment(softhsm: SoftHSM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    store, problems = softhsm.store(softhsm.uri(f"pin-source=file:{pin_file}"))
    assert problems == [] and len(store) == 7
    monkeypatch.setenv("KEYLESS_PKCS11_PIN", PIN)
    store, problems = softhsm.store(softhsm.uri(""))
    assert problems == [] and len(store) == 7
    monkeypatch.setenv("HSM_PIN_FOR_TEST", PIN)
    store, problems = softhsm.store(softhsm.uri("pin-source=env:HSM_PIN_FOR_TEST"))
    assert problems == [] and len(store) == 7


def test_wrong_pin_and_missing_token_are_reported_without_the_pin(softhsm: SoftHSM) -> None:
    backend.close_all_tokens()  # the login is shared: log out so the wrong PIN is really tried
    wrong = "0000-not-the-pin"
    store, problems = softhsm.store(softhsm.uri(f"pin-value={wrong}"))
    assert len(store) == 0 and len(problems) == 1
    assert "refused the PIN" in problems[0] and wrong not in problems[0]
    backend.close_all_tokens()
    store, problems = softhsm.store(softhsm.uri(path="token=no-such-token"))
    assert len(store) == 0 and "no token matches" in problems[0] and PIN not in problems[0]
    store, problems = softhsm.store(f"pkcs11:token={TOKEN}?module-path=/nonexistent/libpkcs11.so&pin-value={PIN}")
    assert len(store) == 0 and "module" in problems[0] and PIN not in problems[0]


def test_pin_is_never_in_repr_config_or_logs(softhsm: SoftHSM, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    uri = softhsm.uri()
    parsed = parse_pkcs11_uri(uri)
    source = KeySource("uri", Path(MODULE), parsed)
    pki = create_demo_pki(tmp_path / "pki", site_keys=("ecdsa-p256",))
    config_file = tmp_path / "ks.yaml"
    config_file.write_text(yaml.safe_dump({
        "auth_cert": str(pki.keyserver_cert), "auth_key": str(pki.keyserver_key),
        "cloudflare_ca_cert": str(pki.ca), "private_key_stores": [{"uri": uri}],
    }))
    config = load_config(config_file, environ={})
    with caplog.at_level("DEBUG"):
        store, _ = softhsm.store(uri)
        handles = list(store)
    texts = [repr(parsed), str(parsed), repr(source), repr(config), repr(store), *map(repr, handles),
             repr(backend.token_for(parsed, PIN)), caplog.text]
    assert config.key_sources[0].uri == parsed
    for text in texts:
        assert PIN not in text, text


def test_sessions_lost_underneath_are_reopened(softhsm: SoftHSM, caplog: pytest.LogCaptureFixture) -> None:
    store, _ = softhsm.store(softhsm.uri())
    key = softhsm.keys["ecdsa-p256"]
    handle = store.find(ski_of(key.public_key()))
    assert handle is not None
    payload = payload_for(Opcode.ECDSA_SIGN_SHA256, key)
    verify(Opcode.ECDSA_SIGN_SHA256, key, payload, handle.execute(Opcode.ECDSA_SIGN_SHA256, payload))
    # What a token reset does to an application: every session handle it held becomes invalid.
    pkcs11.lib(MODULE).reinitialize()  # C_Finalize + C_Initialize: all sessions and logins are gone
    with caplog.at_level("WARNING"):
        result = handle.execute(Opcode.ECDSA_SIGN_SHA256, payload)
    verify(Opcode.ECDSA_SIGN_SHA256, key, payload, result)
    assert "HSM error" in caplog.text and PIN not in caplog.text
    # and keeps working afterwards, on the new sessions
    verify(Opcode.ECDSA_SIGN_SHA256, key, payload, handle.execute(Opcode.ECDSA_SIGN_SHA256, payload))


def test_token_that_stays_away_answers_internal_error(softhsm: SoftHSM) -> None:
    uri = parse_pkcs11_uri(softhsm.uri())
    store, _ = softhsm.store(softhsm.uri())
    key = softhsm.keys["ecdsa-p256"]
    handle = store.find(ski_of(key.public_key()))
    assert handle is not None
    token = backend.token_for(uri, PIN)
    token.close()
    real = token.uri
    token.uri = Pkcs11Uri(module_path=MODULE, token="vanished-token")  # as if the token were unplugged
    try:
        pkcs11.lib(MODULE).reinitialize()
        with pytest.raises(OperationError) as caught:
            handle.execute(Opcode.ECDSA_SIGN_SHA256, bytes(32))
        assert caught.value.code == ErrorCode.INTERNAL
        assert "vanished" not in caught.value.reason and PIN not in caught.value.reason
    finally:
        token.uri = real
    verify(Opcode.ECDSA_SIGN_SHA256, key, bytes(32), handle.execute(Opcode.ECDSA_SIGN_SHA256, bytes(32)))


def test_many_threads_share_the_session_pool(softhsm: SoftHSM) -> None:
    store, _ = softhsm.store(softhsm.uri())
    keys = [softhsm.keys[n] for n in ("ecdsa-p256", "rsa-2048", "ed25519")]
    handles = [store.find(ski_of(k.public_key())) for k in keys]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for round_ in range(12):
                key, handle = keys[(index + round_) % 3], handles[(index + round_) % 3]
                assert handle is not None
                opcode = {"ECDSA": Opcode.ECDSA_SIGN_SHA256, "RSA": Opcode.RSA_PSS_SIGN_SHA256,
                          "ED25519": Opcode.ED25519_SIGN}[handle.kind.name]
                payload = payload_for(opcode, key)
                verify(opcode, key, payload, handle.execute(opcode, payload))
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    token = backend.token_for(parse_pkcs11_uri(softhsm.uri()), PIN)
    assert 1 <= token._open <= backend.DEFAULT_SESSIONS


def import_pki_keys(pki: DemoPKI, label: str) -> dict[str, PrivateKey]:
    """Move the demo PKI's site keys into the token; the key files are deleted."""
    token = pkcs11.lib(MODULE).get_token(token_label=label)
    keys: dict[str, PrivateKey] = {}
    with token.open(rw=True, user_pin=PIN) as session:
        for index, name in enumerate(("ecdsa-p256", "rsa-2048", "ed25519")):
            key = serialization.load_pem_private_key(pki.site_key(name).read_bytes(), None)
            assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
            import_key(session, key, f"site-{name}", bytes([0x40 + index]))
            keys[name] = key
            pki.site_key(name).unlink()  # the key server can only have it from the token
    return keys


SIGN_CASES = [("ecdsa-p256", "ECDSA_SECP256R1_SHA256"), ("rsa-2048", "RSA_PSS_RSAE_SHA256"),
              ("rsa-2048", "RSA_PKCS1_SHA384"), ("ed25519", "ED25519")]


def token_for_demo_pki(tmp_path: Path, label: str) -> tuple[DemoPKI, dict[str, PrivateKey], str]:
    """A demo PKI whose site keys live only in a new token ``label``; the store URI reads a PIN file."""
    pki = create_demo_pki(tmp_path / "pki", site_keys=("ecdsa-p256", "rsa-2048", "ed25519"))
    subprocess.run([require_tool("softhsm2-util", "softhsm2"), "--init-token", "--free", "--label", label,
                    "--so-pin", SO_PIN, "--pin", PIN], check=True, capture_output=True)
    backend.close_all_tokens()
    pkcs11.lib(MODULE).reinitialize()  # see the new token
    keys = import_pki_keys(pki, label)
    pin_file = tmp_path / "hsm.pin"
    pin_file.write_text(PIN)
    pin_file.chmod(0o600)
    return pki, keys, f"pkcs11:token={label}?module-path={MODULE}&pin-source=file:{pin_file}"


def sign_and_verify(pki: DemoPKI, keys: dict[str, PrivateKey], port: int, rounds: int = 1) -> int:
    """Sign every SIGN_CASES scheme ``rounds`` times through a KeylessClient; verify each; return the count."""
    from keyless.client import KeylessClient, make_ssl_context, opcode_for
    from keyless.keys.schemes import SignatureScheme, digest_for

    message = b"TLS 1.3, server CertificateVerify\x00" + os.urandom(64)
    cases = [(name, SignatureScheme[scheme]) for name, scheme in SIGN_CASES] * rounds

    async def main() -> list[bytes]:
        context = make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca)
        async with KeylessClient([f"127.0.0.1:{port}"], context, server_name="localhost") as client:
            remote = {name: client.remote_key(x509.load_pem_x509_certificate(pki.site_cert(name).read_bytes()))
                      for name, _ in SIGN_CASES}
            return list(await asyncio.gather(*(remote[name].sign(scheme, message) for name, scheme in cases)))

    for (name, scheme), signature in zip(cases, asyncio.run(main()), strict=True):
        verify(opcode_for(scheme, keys[name].public_key()), keys[name], digest_for(scheme, message), signature)
    return len(cases)


def test_key_server_process_signs_with_keys_in_the_token(softhsm: SoftHSM, tmp_path: Path) -> None:
    label = "keyless-e2e"
    pki, keys, uri = token_for_demo_pki(tmp_path, label)
    with start_keyserver(pki, tmp_path, private_key_dirs=[], private_key_stores=[{"uri": uri}]) as ks:
        assert ks.keys == 3
        assert sign_and_verify(pki, keys, ks.port) == 4
        assert ks.sign_count() == 4
        # A key added to the token is picked up by SIGHUP, without a restart.
        added = ec.generate_private_key(ec.SECP384R1())
        with pkcs11.lib(MODULE).get_token(token_label=label).open(rw=True, user_pin=PIN) as session:
            import_key(session, added, "site-added", b"\x4f")
        ks.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded keys" in ks.log(), "the key server to reload its keys")
        assert "reloaded keys: 4 loaded" in ks.log()
        assert ks.metric_value("keyless_keys_loaded") == 4
        assert sign_and_verify(pki, keys, ks.port) == 4  # the old keys keep working after the reload
        log_text = ks.log()
    assert f"token={label}" in log_text and PIN not in log_text


def test_forked_workers_each_open_the_token(softhsm: SoftHSM, tmp_path: Path) -> None:
    pki, keys, uri = token_for_demo_pki(tmp_path, "keyless-workers")
    with start_keyserver(pki, tmp_path, private_key_dirs=[], private_key_stores=[{"uri": uri}], workers=2) as ks:
        assert ks.keys == 3, ks.log()
        assert sign_and_verify(pki, keys, ks.port, rounds=10) == 40
        # each worker publishes its metrics to the supervisor about twice a second
        wait_until(lambda: ks.sign_count() == 40, lambda: f"40 signatures counted, not {ks.sign_count()}")


def test_ec_point_bare_or_wrapped_is_read_right() -> None:
    """CKA_EC_POINT is DER OCTET STRING-wrapped by the standard; some tokens store the bare point, and
    a bare point whose X starts with 0x3f even parses as DER. Each form must yield the right key."""
    for _ in range(20_000):  # one key in 256 qualifies
        public = ec.generate_private_key(ec.SECP256R1()).public_key()
        point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        if point[1] == 0x3F:  # 0x04 0x3f ...: looks like an OCTET STRING of 63 bytes
            break
    else:
        pytest.fail("no key with X starting 0x3f in 20,000 tries")
    for stored in (point, _octet_string(point)):
        candidates = (backend._octet_string_content(stored), stored)
        found = backend._first_valid(candidates, lambda data: ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), data))
        assert found == public
