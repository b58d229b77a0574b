"""Operator input: PKCS#11 URIs and both daemons' YAML configuration files.

``pkcs11_uri``: RFC 7512 URIs as the key server's ``private_key_stores: [{uri: ...}]`` takes them. Invariant:
a ``Pkcs11Uri`` or ``Pkcs11UriError``; a PIN given in the URI never shows in its display form or repr.

``keyserver_config`` and ``edge_config``: the input is written as the configuration file (in a directory
holding a real PKI, so paths in the seeds exist) and loaded as the daemons load it. Invariant: a config or
the project's ``ConfigError`` (whose message names the key), never another exception (no traceback for an
operator), and bounded time and memory (YAML aliases make small documents describe huge ones).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
from pathlib import Path

from keyless.edge import config as edge_config
from keyless.keys.pkcs11_uri import Pkcs11UriError, parse_pkcs11_uri
from keyless.pki import create_demo_pki
from keyless.server import config as server_config
from tests.fuzz.harness import Target, check

MAX_MESSAGE = 64 * 1024  # an error message longer than this is a document echoed back, not an explanation


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def pkcs11_one_input(data: bytes) -> None:
    text = _text(data)
    try:
        uri = parse_pkcs11_uri(text, Path("/nonexistent-base"))
    except Pkcs11UriError as exc:
        check(len(str(exc)) < MAX_MESSAGE, "error message of unbounded size")
        return
    display = uri.display
    if uri.pin_value:
        without_pin = dataclasses.replace(uri, pin_value=None)
        check(repr(uri) == repr(without_pin) and display == without_pin.display, "the PIN shows in repr() or display")
    if uri.pin_source is not None and uri.pin_source.startswith("env:"):
        try:
            uri.pin({})
        except Pkcs11UriError:
            pass


@functools.cache
def workdir() -> Path:
    """A directory with a demo PKI (ca.pem, keyserver.pem, edge.pem, keys/, certs/) the seeds refer to."""
    directory = Path(tempfile.mkdtemp(prefix="keyless-fuzz-config-"))
    create_demo_pki(directory)
    return directory


def _write(name: str, data: bytes) -> Path:
    path = workdir() / name
    path.write_bytes(data)
    return path


def keyserver_one_input(data: bytes) -> None:
    path = _write("fuzz-keyserver.yaml", data)
    try:
        server_config.load_config(path, environ={})
    except server_config.ConfigError as exc:
        check(len(str(exc)) < MAX_MESSAGE, f"error message of {len(str(exc))} characters")


def edge_one_input(data: bytes) -> None:
    path = _write("fuzz-edge.yaml", data)
    try:
        edge_config.load_config(path)
    except edge_config.ConfigError as exc:
        check(len(str(exc)) < MAX_MESSAGE, f"error message of {len(str(exc))} characters")
        # a problem of one key names it; a problem of the whole file (unreadable, not UTF-8, YAML syntax) the file
        check(bool(exc.key or exc.file), "a ConfigError must name the key or the file")  # type: ignore[attr-defined]


def setup() -> None:
    workdir()
    os.environ.pop("KEYLESS_PKCS11_PIN", None)


TARGETS = [
    Target("pkcs11_uri", pkcs11_one_input, "config", "RFC 7512 PKCS#11 URI parser", max_len=2048),
    Target("keyserver_config", keyserver_one_input, "config", "key server YAML config loader", setup=setup,
           max_len=4096),
    Target("edge_config", edge_one_input, "config", "edge YAML config loader", setup=setup, max_len=4096),
]
