"""Parsing of PKCS#11 URIs (RFC 7512) and PIN sources; needs no PKCS#11 module."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyless.keys.pkcs11_uri import Pkcs11UriError, parse_pkcs11_uri
from keyless.server.config import ConfigError, _env_value, _store

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SECRET = "s3cr%65t-PIN"  # percent-encoded "s3cret-PIN"


def test_rfc7512_attributes_are_decoded() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:token=My%20Token;serial=894d486a546359b4;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;"
        f"slot-id=7;object=site%2Dkey;id=%01%02%ff;type=private;x-vendor=ignored?module-path={MODULE}"
        f"&pin-value={SECRET}"
    )
    assert uri.token == "My Token" and uri.serial == "894d486a546359b4"
    assert uri.manufacturer == "SoftHSM project" and uri.model == "SoftHSM v2"
    assert uri.slot_id == 7 and uri.object_label == "site-key" and uri.object_id == b"\x01\x02\xff"
    assert uri.module_path == MODULE
    assert uri.pin() == "s3cret-PIN"
    for text in (repr(uri), str(uri), uri.display):
        assert "s3cret" not in text and "s3cr%65t" not in text
    assert uri.display == (f"pkcs11:token=My Token;serial=894d486a546359b4;manufacturer=SoftHSM project;"
                           f"model=SoftHSM v2;slot-id=7;object=site-key;id=%01%02%ff?module-path={MODULE}")


@pytest.mark.parametrize(("text", "message"), [
    ("token=a?module-path=/x.so", "must start with 'pkcs11:'"),
    ("pkcs11:token=a", "module-path is required"),
    ("pkcs11:token=a?module-name=softhsm2", "module-name is not supported"),
    ("pkcs11:token=a?module-path=", "module-path is empty"),
    ("pkcs11:token=a;colour=blue?module-path=/x.so", "unknown path attribute 'colour'"),
    ("pkcs11:token=a?module-path=/x.so&pin=1", "unknown query attribute 'pin'"),
    ("pkcs11:token=a;token=b?module-path=/x.so", "token appears twice"),
    ("pkcs11:token?module-path=/x.so", "has no '=value'"),
    ("pkcs11:type=cert?module-path=/x.so", "type must be 'private'"),
    ("pkcs11:slot-id=one?module-path=/x.so", "slot-id must be a decimal number"),
    (f"pkcs11:token=a?module-path=/x.so&pin-value={SECRET}&pin-source=file:/p", "either pin-value or pin-source"),
])
def test_bad_uris_are_refused_with_a_reason_and_no_pin(text: str, message: str) -> None:
    with pytest.raises(Pkcs11UriError) as caught:
        parse_pkcs11_uri(text)
    assert message in str(caught.value)
    assert "s3cr" not in str(caught.value)


def test_pin_sources(tmp_path: Path) -> None:
    (tmp_path / "pin").write_text("file-pin\n")
    relative = parse_pkcs11_uri(f"pkcs11:token=a?module-path={MODULE}&pin-source=pin", base=tmp_path)
    assert relative.pin() == "file-pin"
    absolute = parse_pkcs11_uri(f"pkcs11:token=a?module-path={MODULE}&pin-source=file:{tmp_path / 'pin'}")
    assert absolute.pin() == "file-pin"
    from_env = parse_pkcs11_uri(f"pkcs11:token=a?module-path={MODULE}&pin-source=env:MY_HSM_PIN")
    assert from_env.pin({"MY_HSM_PIN": "env-pin"}) == "env-pin"
    with pytest.raises(Pkcs11UriError, match="MY_HSM_PIN is not set"):
        from_env.pin({})
    default = parse_pkcs11_uri(f"pkcs11:token=a?module-path={MODULE}")
    assert default.pin({"KEYLESS_PKCS11_PIN": "default-pin"}) == "default-pin"
    assert default.pin({}) is None
    missing = parse_pkcs11_uri(f"pkcs11:token=a?module-path={MODULE}&pin-source=file:{tmp_path / 'nope'}")
    with pytest.raises(Pkcs11UriError, match="cannot read the PIN file"):
        missing.pin()
    (tmp_path / "big").write_bytes(b"x" * 5000)
    big = parse_pkcs11_uri(f"pkcs11:token=a?module-path={MODULE}&pin-source=file:{tmp_path / 'big'}")
    with pytest.raises(Pkcs11UriError, match="too large"):
        big.pin()


def test_config_accepts_uri_stores_and_never_echoes_the_pin(tmp_path: Path) -> None:
    source = _store(0, {"uri": f"pkcs11:token=a;object=k?module-path={MODULE}&pin-value={SECRET}"}, tmp_path)
    assert source.kind == "uri" and source.uri is not None and source.uri.object_label == "k"
    assert "s3cr" not in repr(source)
    for bad in ({"uri": f"pkcs11:token=a?pin-value={SECRET}"}, {"uri": 5},
                {"uri": f"pkcs11:token=a?module-path=/x&pin-value={SECRET}", "dir": "/x"}):
        with pytest.raises(ConfigError) as caught:
            _store(0, bad, tmp_path)
        assert "private_key_stores[0]" in str(caught.value) and "s3cr" not in str(caught.value)
    assert _env_value("private_key_stores", f"pkcs11:token=a?module-path={MODULE},dir:/keys") == [
        {"uri": f"pkcs11:token=a?module-path={MODULE}"}, {"dir": "/keys"}]
