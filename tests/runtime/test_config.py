"""keyless.runtime.config: the readers both daemons' schemas are made of, and the errors they give."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyless.pki import DemoPKI
from keyless.runtime.config import (
    ConfigError,
    MaterialProblem,
    Origin,
    Section,
    apply_environment,
    env_overrides,
    load_yaml,
    parse_host_port,
    redact_url,
)
from keyless.runtime.tls_material import check_key_matches, read_chain, read_private_key, validity_problem
from tests.runtime.daemons import expired_certificate, intermediate_chain


def section(data: dict[str, object], known: set[str] | None = None, variables: dict[str, str] | None = None,
            file: Path | None = Path("/etc/keyless/x.yaml")) -> Section:
    origin = Origin(file, Path("/etc/keyless"), dict(variables or {}))
    return Section(data, "", origin, known or set(data))


@pytest.mark.parametrize(("text", "default_port", "expected"), [
    ("127.0.0.1:2406", None, ("127.0.0.1", 2406)),
    ("[::1]:2406", None, ("::1", 2406)),
    ("keys.example.com:2407", None, ("keys.example.com", 2407)),
    ("keys.example.com", 2407, ("keys.example.com", 2407)),
    ("[::1]", 2407, ("::1", 2407)),
    (" 10.0.0.7:1 ", None, ("10.0.0.7", 1)),
])
def test_host_port_accepts_one_spelling(text: str, default_port: int | None, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, default_port) == expected


@pytest.mark.parametrize(("text", "problem", "fix"), [
    (":9000", "has no host", "0.0.0.0:9000"),
    ("9000", "has no host", "127.0.0.1:9000"),
    ("::1", "IPv6 address must be in brackets", "[::1]:PORT"),
    ("::1:9000", "IPv6 address must be in brackets", "[::1:9000]:PORT"),
    ("[10.0.0.1]:80", "is not an IPv6 address", "[::1]:2406"),
    ("10.1.2.3.4:80", "is not an IPv4 address", "10.1.2.3"),
    ("host:99999", "port outside 0..65535", "host:port"),
    ("host:http", "port outside 0..65535", "host:port"),
    ("bad_host!:80", "is not an IP address or a host name", ""),
    ("localhost", "has no port", "host:port"),
])
def test_host_port_refuses_ambiguous_spellings(text: str, problem: str, fix: str) -> None:
    with pytest.raises(MaterialProblem) as caught:
        parse_host_port(text)
    assert problem in caught.value.problem and fix in caught.value.fix


def test_error_names_file_key_value_and_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        section({"port": "abc"}).integer("port", 1, 0, 65535)
    assert str(caught.value) == ("/etc/keyless/x.yaml: port: 'abc' is not a whole number in 0..65535 "
                                 "(fix: use a whole number from 0 to 65535)")


def test_an_override_is_blamed_on_its_variable_not_the_yaml_key() -> None:
    document: dict[str, object] = {"port": 2407}
    origin = Origin(Path("/etc/keyless/x.yaml"), Path("/etc/keyless"))
    apply_environment(document, origin, env_overrides(["port"]), {"KEYLESS_PORT": "abc", "KEYLESS_PROT": "1"})
    with pytest.raises(ConfigError) as caught:
        Section(document, "", origin, {"port"}).integer("port", 1, 0, 65535)
    text = str(caught.value)
    assert text.startswith("environment variable KEYLESS_PORT: 'abc' is not a whole number")
    assert "x.yaml" not in text and "port:" not in text


def test_section_overrides_and_their_types() -> None:
    document: dict[str, object] = {}
    origin = Origin(None, Path("/base"))
    overrides = env_overrides([], {"tickets": ["key_files", "enabled", "rotation"]})
    apply_environment(document, origin, overrides, {"KEYLESS_TICKETS_KEY_FILES": "a.key, /k/b.key",
                                                    "KEYLESS_TICKETS_ENABLED": "no", "KEYLESS_TICKETS_ROTATION": "2m"})
    tickets = Section(document, "", origin, {"tickets"}).section("tickets", {"key_files", "enabled", "rotation"})
    assert tickets.strings("key_files", "files", "x") == ["a.key", "/k/b.key"]
    assert tickets.resolve("key_files", "a.key") == Path.cwd() / "a.key"  # a variable's paths start at the cwd
    assert tickets.boolean("enabled", True) is False and tickets.duration("rotation", 1, 1, 3600) == 120.0


def test_unknown_key_suggests_the_near_one() -> None:
    with pytest.raises(ConfigError) as caught:
        section({"certficates": []}, known={"certificates", "listen", "origin"})
    assert caught.value.key == "certficates" and "did you mean certificates?" in caught.value.fix
    with pytest.raises(ConfigError) as caught:
        section({"zzz": 1}, known={"certificates", "listen"})
    assert "did you mean" not in caught.value.fix and "use one of: certificates, listen" in caught.value.fix


def test_durations_sizes_enums_and_bools() -> None:
    values = section({"a": "500ms", "b": 2, "c": "16KiB", "d": "1M", "e": "WARN", "f": "3", "g": "yes"})
    assert values.duration("a", 1, 0, 10) == 0.5 and values.duration("b", 1, 0, 10) == 2.0
    assert values.size("c", 1, 0, 1 << 30) == 16384 and values.size("d", 1, 0, 1 << 30) == 1 << 20
    levels = {"warn": "WARNING", 3: "ERROR"}
    assert values.enum("e", "x", levels, "fix") == "WARNING" and values.enum("f", "x", levels, "fix") == "ERROR"
    with pytest.raises(ConfigError, match="'yes' is not true or false"):
        values.boolean("g", False)  # a quoted string in the file is not a boolean; a variable's "yes" is


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("port: 2407\nlisten: [unclosed\nloglevel: info\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert str(caught.value).startswith(f"{path}:3:") and "not valid YAML" in str(caught.value)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        load_yaml(path)


def test_redis_urls_never_show_their_password() -> None:
    secret = "hunter2-redis-password"
    assert secret not in redact_url(f"unix://:{secret}@/run/redis.sock")
    assert redact_url(f"redis://user:{secret}@h:6379/0") == "redis://user:****@h:6379/0"
    for bad in (f"http://:{secret}@h/0", f"redis://:{secret}@10.1.2.3.4:6379/0", f"redis://:{secret}@h:port/0",
                f"redis://:{secret}@/0"):
        with pytest.raises(ConfigError) as caught:
            section({"redis": bad}).redis_url("redis")
        assert secret not in str(caught.value) and caught.value.key == "redis"
    assert section({"redis": f"unix://:{secret}@/run/redis.sock"}).redis_url("redis")


def test_chain_order_and_key_pairs(tmp_path: Path, runtime_pki: DemoPKI) -> None:
    good, intermediate_first, key = intermediate_chain(tmp_path, runtime_pki)
    assert len(read_chain(good)) == 2
    with pytest.raises(MaterialProblem) as caught:
        read_chain(intermediate_first)
    assert "wrong order" in caught.value.problem and "leaf certificate first" in caught.value.fix
    unrelated = tmp_path / "unrelated.pem"
    unrelated.write_bytes(good.read_bytes().split(b"-----END CERTIFICATE-----\n")[0]
                          + b"-----END CERTIFICATE-----\n" + runtime_pki.edge_cert.read_bytes())
    with pytest.raises(MaterialProblem, match="not a chain"):
        read_chain(unrelated)
    leaf = read_chain(good)[0]
    check_key_matches(read_private_key(key), leaf, "chain")
    with pytest.raises(MaterialProblem, match="does not belong to the certificate in chain"):
        check_key_matches(read_private_key(runtime_pki.edge_key), leaf, "chain")
    with pytest.raises(MaterialProblem, match="holds a certificate, not a private key"):
        read_private_key(good)


def test_validity(tmp_path: Path, runtime_pki: DemoPKI) -> None:
    expired, _ = expired_certificate(tmp_path, runtime_pki)
    assert "expired on" in (validity_problem(read_chain(expired)[0]) or "")
    (tmp_path / "future").mkdir()
    future, _ = expired_certificate(tmp_path / "future", runtime_pki, future=True)
    assert "not valid before" in (validity_problem(read_chain(future)[0]) or "")
    assert validity_problem(read_chain(runtime_pki.site_cert("ecdsa-p256"))[0]) is None


def test_a_key_given_twice_is_named_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("listen: 127.0.0.1\nport: 2407\nnested: {a: 1, b: 2}\nport: 3407\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert str(caught.value).startswith(f"{path}:4:1: not valid YAML: 'port' is given twice (first on line 2)")
    path.write_text("origin: {mode: http, mode: tcp}\n")
    with pytest.raises(ConfigError, match="'mode' is given twice"):
        load_yaml(path)
    path.write_text("base: &b {a: 1, c: 1}\nuse:\n  <<: *b\n  c: 2\nlist: [{a: 1}, {a: 2}]\n")
    assert load_yaml(path)[0]["use"] == {"a": 1, "c": 2}  # merge keys and repeated keys in sibling maps are fine
