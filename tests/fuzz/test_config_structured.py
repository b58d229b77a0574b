"""Structured fuzzing of both daemons' configuration loaders with hypothesis: documents built from the keys
the loaders know, each holding a value of any YAML type (the byte-level atheris targets rarely get past the
YAML syntax into the loaders' validation). Invariant: a config or ConfigError, whatever the document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyless.edge import config as edge_config
from keyless.server import config as server_config
from tests.fuzz.fuzz_config import workdir

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["127.0.0.1:2407", "[::1]:80", "ca.pem", "keys", "edge.pem", "edge-key.pem",
                                           "certs/ecdsa-p256.pem", "keys/ecdsa-p256.key", "http", "tcp", "info",
                                           "redis://127.0.0.1:6379/0", "pkcs11:token=a?module-path=/x.so", "10s",
                                           "keyserver.pem", "keyserver-key.pem", "*.keyless.test", "0.0.0.0"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["address", "port", "names", "chain", "key_servers", "key_file", "default", "mode", "dir",
                     "file", "uri", "client_cert", "client_key", "ca", "timeout", "rotation", "lifetime",
                     "key_files", "redis_url", "session_cache_size", "max_connections", "x"]), inner, max_size=4),
    max_leaves=8)

SERVER_KEYS = sorted(server_config._KNOWN_KEYS | set(server_config.UNSUPPORTED_KEYS) | {"unknown"})
EDGE_KEYS = sorted(edge_config._TOP_KEYS | {"unknown"})


def _write(name: str, document: Any) -> Path:
    path = workdir() / name
    path.write_text(yaml.safe_dump(document))
    return path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(SERVER_KEYS), VALUES, max_size=8))
def test_keyserver_config_documents(document: dict[str, Any]) -> None:
    base = {"auth_cert": "keyserver.pem", "auth_key": "keyserver-key.pem", "cloudflare_ca_cert": "ca.pem",
            "private_key_dirs": ["keys"]}
    for doc in (document, {**base, **document}):
        try:
            server_config.load_config(_write("structured-keyserver.yaml", doc), environ={})
        except server_config.ConfigError:
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(EDGE_KEYS), VALUES, max_size=8))
def test_edge_config_documents(document: dict[str, Any]) -> None:
    base = {"certificates": [{"names": ["keyless.test"], "chain": "certs/ecdsa-p256.pem",
                              "key_file": "keys/ecdsa-p256.key"}], "origin": {"address": "127.0.0.1:8080"}}
    for doc in (document, {**base, **document}):
        try:
            edge_config.load_config(_write("structured-edge.yaml", doc))
        except edge_config.ConfigError:
            pass
