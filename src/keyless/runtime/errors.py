"""The one configuration error of both daemons, and how values appear in it (never a secret)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

REDACTED = "(redacted)"


class ConfigError(Exception):
    """A configuration the daemon cannot use. ``str()`` is one line: where, what, and the fix."""

    def __init__(
        self,
        key: str,
        problem: str,
        fix: str = "",
        *,
        file: Path | str | None = None,
        variable: str | None = None,
    ) -> None:
        super().__init__(key, problem, fix)
        self.key = key
        self.problem = problem
        self.fix = fix
        self.file = str(file) if file is not None else None
        self.variable = variable

    def located(self, file: Path | str | None) -> ConfigError:
        """This error, naming ``file`` if it names none yet (errors raised below the config layer)."""
        if self.file is None and self.variable is None and file is not None:
            self.file = str(file)
        return self

    def __str__(self) -> str:
        if self.variable is not None:
            kind = "command-line option" if self.variable.startswith("--") else "environment variable"
            where = f"{kind} {self.variable}: "
        else:
            where = f"{self.file}: " if self.file else ""
            where += f"{self.key}: " if self.key else ""
        return f"{where}{self.problem}" + (f" (fix: {self.fix})" if self.fix else "")


class ConfigProblems(ConfigError):
    """Several problems found in one reading (``problems``); the key, problem and fix are the first one's."""

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.key, first.problem, first.fix, file=first.file, variable=first.variable)
        self.problems = problems

    def __str__(self) -> str:  # for a log line; a terminal gets one line per problem (problems_of)
        return "; ".join(str(problem) for problem in self.problems)


def problems_of(error: ConfigError) -> list[ConfigError]:
    """Every problem an error stands for, for printing one line each."""
    return list(error.problems) if isinstance(error, ConfigProblems) else [error]


class Collector:
    """Read keys one after the other, go on after a bad one, and report them all at the end."""

    def __init__(self) -> None:
        self.problems: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        self.problems.extend(problems_of(error))

    def read(self, reader: Callable[[], T], fallback: T) -> T:
        try:
            return reader()
        except ConfigError as exc:
            self.add(exc)
            return fallback

    def check(self) -> None:
        if len(self.problems) == 1:
            raise self.problems[0]
        if self.problems:
            raise ConfigProblems(self.problems)


class MaterialProblem(ValueError):
    """A file's content is unusable; the caller knows which key named the file and raises ConfigError."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def at(self, key: str, file: Path | str | None = None) -> ConfigError:
        """This problem as the error of the configuration key that named the file."""
        return ConfigError(key, self.problem, self.fix, file=file)


def show(value: object, *, secret: bool = False) -> str:
    """A value for an error message: never a secret, never a screenful."""
    if secret:
        return REDACTED
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def redact_url(url: str) -> str:
    """``url`` with any password replaced, for messages and logs (``redis://:****@host:6379/0``)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(a URL that cannot be parsed, not shown)"
    if password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:****@{hostinfo}").geturl()


__all__ = ["REDACTED", "Collector", "ConfigError", "ConfigProblems", "MaterialProblem", "problems_of", "redact_url",
           "show"]
