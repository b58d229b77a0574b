"""One configuration layer for both daemons: errors, typed readers, YAML, environment overrides.

A daemon's config module is a schema over this: for each section, the keys it knows and one typed
reader call per key (``section.integer("port", 2407, 0, 65535)``). Everything an operator can get wrong
ends in one ``ConfigError`` that names

- the file (and line, for YAML syntax), or the ``KEYLESS_*`` variable when the value came from the
  environment — an override is blamed on the variable, never on the YAML key it replaced;
- the key path (``certificates[1].chain``);
- the problem, showing the value unless it is secret (a Redis URL is shown without its password);
- the fix.

The error itself lives in ``runtime.errors``, the one rule for addresses (``host:port``, IPv6 in
brackets) in ``runtime.addresses``, checks of TLS files in ``runtime.tls_material``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

import yaml

from keyless.runtime.addresses import (
    HOST_PORT_FIX,
    check_host,
    check_listen_host,
    listen_error,
    parse_host_port,
)
from keyless.runtime.errors import (
    REDACTED,
    Collector,
    ConfigError,
    ConfigProblems,
    MaterialProblem,
    problems_of,
    redact_url,
    show,
)
from keyless.runtime.logging import FORMATS as LOG_FORMATS
from keyless.runtime.logging import WORKER_INDEX_VARIABLE
from keyless.runtime.loop import NO_UVLOOP_VARIABLE

T = TypeVar("T")

# --- where values come from -------------------------------------------------------------------------


@dataclass
class Origin:
    """Where a document came from: its file (None: environment only), the base of relative paths, and
    which key paths an environment variable set."""

    file: Path | None
    base: Path
    variables: dict[str, str] = field(default_factory=dict)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML would keep the last silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    first: dict[object, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *anchor": keys merged in may be overridden here; that is the point of a merge
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        try:
            mark = first.setdefault(key, key_node.start_mark)
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if mark is not key_node.start_mark:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is given twice (first on line {mark.line + 1})", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(path: Path) -> tuple[dict[str, Any], Origin]:
    """Read a YAML mapping; syntax errors name the file, line and column."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError("", f"cannot read the configuration file ({exc.strerror or exc})",
                          "check the path given to --config", file=path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8 text (byte {exc.start})", "save the file as UTF-8", file=path) from None
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        fix = "keep one of the two" if "given twice" in problem else \
            "fix the YAML syntax at that line (indent with spaces; quote values with ': ')"
        raise ConfigError("", f"not valid YAML: {problem}", fix, file=where) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError("", f"the top level is a {type(document).__name__}, not a mapping",
                          "write one key: value per line", file=path)
    return {str(k): v for k, v in document.items()}, Origin(path, path.parent.resolve())


EnvConverter = Callable[[str], Any]


@dataclass(frozen=True)
class EnvOverride:
    """``KEYLESS_<NAME>`` replaces the value at ``path`` (converted from text by ``convert``)."""

    variable: str
    path: tuple[str, ...]
    convert: EnvConverter = str


def env_overrides(keys: Iterable[str], sections: Mapping[str, Iterable[str]] | None = None,
                  converters: Mapping[str, EnvConverter] | None = None) -> tuple[EnvOverride, ...]:
    """The overrides of a schema: ``KEYLESS_<KEY>`` per top-level key, ``KEYLESS_<SECTION>_<KEY>`` per
    key of a mapping section; ``converters`` by dotted key path (default: the text itself)."""
    converters = converters or {}
    found = [EnvOverride(f"KEYLESS_{key.upper()}", (key,), converters.get(key, str)) for key in keys]
    for section, names in (sections or {}).items():
        for name in names:
            dotted = f"{section}.{name}"
            found.append(EnvOverride(f"KEYLESS_{section.upper()}_{name.upper()}", (section, name),
                                     converters.get(dotted, str)))
    return tuple(found)


def apply_environment(document: dict[str, Any], origin: Origin, overrides: Iterable[EnvOverride],
                      environ: Mapping[str, str] | None) -> None:
    env = os.environ if environ is None else environ
    for override in overrides:
        text = env.get(override.variable)
        if text is None:
            continue
        target = document
        for part in override.path[:-1]:
            inner = target.get(part)
            if inner is None:
                inner = target[part] = {}
            if not isinstance(inner, dict):
                break  # the section itself is malformed: its reader reports it against the file
            target = inner
        else:
            target[override.path[-1]] = override.convert(text)
            origin.variables[".".join(override.path)] = override.variable


# KEYLESS_* variables read outside the schemas (the PKCS#11 PIN, the event-loop choice, a worker's index, the
# test suite's switch): never reported as unknown.
PROCESS_VARIABLES = frozenset({"KEYLESS_PKCS11_PIN", NO_UVLOOP_VARIABLE, WORKER_INDEX_VARIABLE, "KEYLESS_REQUIRE_ALL"})


def unknown_variables(overrides: Iterable[EnvOverride], environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``KEYLESS_*`` variable in the environment that no override reads: a typo
    (``KEYLESS_PROT``) would otherwise be ignored without a word. Values are never shown (one may be secret)."""
    env = os.environ if environ is None else environ
    known = sorted({override.variable for override in overrides} | PROCESS_VARIABLES)
    warnings = []
    for name in sorted(env):
        if not name.startswith("KEYLESS_") or name in known:
            continue
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f"did you mean {near[0]}?" if near else "see the daemon's documentation for the KEYLESS_* variables"
        warnings.append(f"environment variable {name} is not a setting of this daemon and is ignored ({hint})")
    return warnings


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# --- typed readers ----------------------------------------------------------------------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


class Section:
    """One mapping of a document at key path ``path``, checked against the keys the schema knows."""

    def __init__(self, data: object, path: str, origin: Origin, known: Collection[str],
                 collector: Collector | None = None) -> None:
        """``collector``: where unknown keys go (else the first one raises)."""
        self.path = path
        self.origin = origin
        self.known = known
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self._error_at(path or "(top level)", f"must be a mapping of key: value, not {type(data).__name__}",
                                 "write key: value pairs")
        self.data: dict[str, Any] = {str(k): v for k, v in data.items()}
        unknown = [self.unknown_key(key) for key in self.data if key not in known]
        for key in [key for key in self.data if key not in known]:
            del self.data[key]  # reported; reading goes on without it
        if collector is not None:
            collector.problems.extend(unknown)
        elif unknown:
            raise unknown[0] if len(unknown) == 1 else ConfigProblems(unknown)

    # -- errors

    def where(self, key: str) -> str:
        if not key:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def _error_at(self, where: str, problem: str, fix: str) -> ConfigError:
        variable = self.origin.variables.get(where)
        return ConfigError(where, problem, fix, file=None if variable else self.origin.file, variable=variable)

    def error(self, key: str, problem: str, fix: str) -> ConfigError:
        return self._error_at(self.where(key), problem, fix)

    def unknown_key(self, key: str) -> ConfigError:
        near = difflib.get_close_matches(key, list(self.known), n=1, cutoff=0.7)
        hint = f"did you mean {near[0]}? " if near else ""
        return self.error(key, "unknown configuration key", f"{hint}use one of: {', '.join(sorted(self.known))}")

    # -- structure

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    def section(self, key: str, known: Collection[str]) -> Section:
        return Section(self.data.get(key), self.where(key), self.origin, known)

    def sections(self, key: str, known: Collection[str], default: Any = None) -> list[Section]:
        """A list of mappings (one mapping alone is taken as a list of one)."""
        value = self.raw(key, default)
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of mappings, got {show(value)}", "write - key: value items")
        return [Section(item, f"{self.where(key)}[{i}]", self.origin, known) for i, item in enumerate(value)]

    def strings(self, key: str, what: str, example: str) -> list[str]:
        value = self.raw(key, [])
        if isinstance(value, str):
            value = comma_list(value) if self.where(key) in self.origin.variables else [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, f"must be a list of {what}", f"write {key}: [{example}]")
        return value

    # -- scalars

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw(key, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"{show(value)} is not a whole number in {low}..{high}",
                             f"use a whole number from {low} to {high}")
        return value

    def duration(self, key: str, default: float, low: float, high: float) -> float:
        """Seconds: a number, or a number with ms, s, m or h (``500ms``, ``2m``)."""
        return self._measure(key, default, low, high, _DURATION_UNITS, "s", whole=False, what="a duration",
                             fix=f"use seconds from {low:g} to {high:g}, e.g. 10 or 500ms", unit="seconds")

    def size(self, key: str, default: int, low: int, high: int) -> int:
        """Bytes: a whole number, or with a binary unit (``16KiB``, ``1MiB``; k and M mean the same)."""
        return int(self._measure(key, default, low, high, _SIZE_UNITS, "", whole=True, what="a size", unit="bytes",
                                 fix=f"use a whole number of bytes from {low} to {high}, e.g. 16384 or 16KiB"))

    def _measure(self, key: str, default: float, low: float, high: float, units: Mapping[str, float],
                 default_unit: str, *, whole: bool, what: str, unit: str, fix: str) -> float:
        """A number with an optional unit, converted to the base unit and checked against ``low..high``."""
        value = self.raw(key, default)
        amount = _number_with_unit(value, units, default_unit)
        if amount is None or (whole and amount != int(amount)) or not low <= amount <= high:
            raise self.error(key, f"{show(value)} is not {what} in {low:g}..{high:g} {unit}", fix)
        return amount

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if isinstance(value, str) and self.where(key) in self.origin.variables:
            lowered = value.strip().lower()
            value = True if lowered in _TRUE else False if lowered in _FALSE else value
        if not isinstance(value, bool):
            raise self.error(key, f"{show(value)} is not true or false", "write true or false")
        return value

    def enum(self, key: str, default: object, choices: Mapping[Any, T], fix: str) -> T:
        """One of ``choices``' keys (strings compared case-insensitively; numeric text read as a number)."""
        value = self.raw(key, default)
        lookup = value
        if isinstance(value, str):
            text = value.strip().lower()
            lookup = int(text) if text.isdigit() else text
        if isinstance(lookup, bool) or not isinstance(lookup, str | int) or lookup not in choices:
            raise self.error(key, f"{show(value)} is not allowed", fix)
        return choices[lookup]

    def log_level(self, key: str = "loglevel") -> str:
        """The log level both daemons accept, as Python's level name (``INFO``)."""
        return self.enum(key, "info", LOG_LEVELS, LOG_LEVEL_FIX)

    def log_format(self, key: str = "log_format") -> str:
        """``text`` or ``json`` (see ``keyless.runtime.logging``)."""
        return self.enum(key, "text", {name: name for name in LOG_FORMATS}, "use text or json")

    def text(self, key: str, default: str | None = None, *, secret: bool = False) -> str | None:
        value = self.raw(key, default)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.error(key, f"{show(value, secret=secret)} is not a text value", f"write {key}: some-text")
        return value

    # -- addresses

    def host_port(self, key: str, default: str | None = None, *, default_port: int | None = None,
                  listen: bool = False) -> tuple[str, int]:
        value = self.raw(key, default)
        return self.host_port_value(key, value, default_port=default_port, listen=listen)

    def host_port_value(self, key: str, value: object, *, default_port: int | None = None,
                        listen: bool = False) -> tuple[str, int]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.error(key, f"{show(value)} is not host:port", HOST_PORT_FIX)
        try:
            host, port = parse_host_port(value, default_port)
            if listen:
                check_listen_host(host)
        except MaterialProblem as exc:
            raise self.error(key, exc.problem, exc.fix) from None
        return host, port

    def listen_host(self, key: str, default: str) -> str:
        """An address to bind, without a port: IPv4, IPv6 (brackets optional) or a name that resolves."""
        value = self.raw(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"{show(value)} is not an address", "e.g. 127.0.0.1, 0.0.0.0 or ::")
        host = value.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            check_listen_host(host)
        except MaterialProblem as exc:
            raise self.error(key, exc.problem, exc.fix) from None
        return host

    def redis_url(self, key: str) -> str | None:
        """A Redis URL; the password it may hold never appears in an error."""
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, "is not a Redis URL", "write redis://host:6379/0")
        shown = redact_url(value)
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise self.error(key, f"{shown} is not a Redis URL", "write redis://[:PASSWORD@]host:6379/0") from None
        if parts.scheme in ("redis", "rediss"):
            if not parts.hostname:
                raise self.error(key, f"{shown} names no host", "write redis://host:6379/0")
            try:
                check_host(parts.hostname)
            except MaterialProblem as exc:
                raise self.error(key, f"{shown}: {exc.problem}", exc.fix) from None
        elif parts.scheme == "unix":
            if not parts.path:
                raise self.error(key, f"{shown} names no socket path", "write unix:///run/redis/redis.sock")
        else:
            raise self.error(key, f"{shown} is not a Redis URL",
                             "write redis://host:6379/0, rediss://host:6380/0 or unix:///run/redis.sock")
        return value

    # -- files

    def file_path(self, key: str, *, required: bool = True, what: str = "file") -> Path | None:
        """A path, relative to the config file's directory (to the current directory for a variable)."""
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required", f"give the path of the {what}")
            return None
        if not isinstance(value, str) or not value:
            raise self.error(key, f"{show(value)} is not a path", "give the path as a string")
        return self.resolve(key, value)

    def resolve(self, key: str, value: str) -> Path:
        try:
            path = Path(value).expanduser()
        except RuntimeError:  # "~someone/..." for a user this machine does not know (found by fuzzing)
            raise self.error(key, f"{show(value)} names a home directory this machine does not know",
                             "give an absolute path, or a path relative to the configuration file") from None
        base = Path.cwd() if self.where(key) in self.origin.variables else self.origin.base
        return path if path.is_absolute() else base / path

    def file(self, key: str, *, what: str = "PEM file") -> Path:
        path = self.file_path(key, what=what)
        assert path is not None  # required=True
        return self.existing(key, path)

    def existing(self, key: str, path: Path) -> Path:
        if not path.is_file():
            raise self.error(key, f"file {str(path)!r} does not exist",
                             "check the path (relative paths start at the config file)")
        return path


def _number_with_unit(value: object, units: Mapping[str, float], default_unit: str) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) * units[default_unit]
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        if match and match.group(2).lower() in units:
            return float(match.group(1)) * units[match.group(2).lower()]
    return None


def changed_keys(running: object, loaded: object, fields: Mapping[str, str]) -> list[str]:
    """The configuration keys (``fields``: attribute -> key name) whose value differs between two configs."""
    return [key for attribute, key in fields.items() if getattr(running, attribute) != getattr(loaded, attribute)]


# --- the log level both daemons accept --------------------------------------------------------------

# Names, and Cloudflare's numbers 0 (debug) to 5 (fatal); the value is the Python logging level name.
LOG_LEVELS: dict[Any, str] = {
    "debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING", "error": "ERROR",
    "critical": "CRITICAL", "fatal": "CRITICAL",
    0: "DEBUG", 1: "INFO", 2: "WARNING", 3: "ERROR", 4: "CRITICAL", 5: "CRITICAL",
}
LOG_LEVEL_FIX = "use debug, info, warning, error or critical, or a number 0 (debug) to 5 (fatal)"


# --- --check-config ---------------------------------------------------------------------------------


def print_problems(daemon: str, problems: Iterable[ConfigError], warnings: Iterable[str], err: TextIO) -> None:
    """The one shape of configuration messages: ``keyless <daemon>: warning|configuration error: ...``."""
    for warning in warnings:
        print(f"keyless {daemon}: warning: {warning}", file=err)
    for problem in problems:
        print(f"keyless {daemon}: configuration error: {problem}", file=err)


def report(daemon: str, problems: list[ConfigError], warnings: list[str], ok_line: str, out: TextIO,
           err: TextIO) -> int:
    """The one ``--check-config`` outcome: one line per problem (exit 2) or per warning, then OK (exit 0)."""
    print_problems(daemon, problems, warnings, err)
    if problems:
        return 2
    print(ok_line, file=out)
    return 0


Checked = tuple[T, list[ConfigError]]  # a configuration and the problems its files have


def load_for_start(daemon: str, load: Callable[[], Checked[T]], warnings: list[str], err: TextIO, *,
                   warn: bool = True) -> T | None:
    """Start-up's configuration step, the same for both daemons: ``load`` reads and checks (raising
    ``ConfigError`` or returning the problems it found); each warning and each problem is one line on
    ``err`` and a problem makes the result None (the daemon exits 2). ``warn=False`` for a worker: its
    supervisor said them."""
    try:
        config, problems = load()
    except ConfigError as exc:
        problems = problems_of(exc)
    print_problems(daemon, problems, warnings if warn else [], err)
    return None if problems else config


# The errors and address rules are re-exported: a daemon's schema imports everything from here.
__all__ = [
    "HOST_PORT_FIX", "LOG_LEVELS", "LOG_LEVEL_FIX", "PROCESS_VARIABLES", "REDACTED", "Checked", "Collector",
    "ConfigError", "ConfigProblems", "EnvOverride", "MaterialProblem", "Origin", "Section", "apply_environment",
    "changed_keys", "check_host", "check_listen_host", "comma_list", "env_overrides", "listen_error",
    "load_for_start", "load_yaml", "parse_host_port", "print_problems", "problems_of", "redact_url", "report",
    "show", "unknown_variables",
]
