"""Key-file hygiene, as sshd's StrictModes: a private key nobody else can read, write or replace.

A private key file is refused when it is group- or world-writable, readable by every user, or owned by
a user other than the daemon's or root; and when its directory is group- or world-writable or owned by
such a user (whoever can write the directory can swap the key for one of their own, or link it to a
key they want signed). Group read (0640) is allowed: a deployment may give the key to the daemon
through a group. A directory readable by everyone is allowed too (sshd allows it): file modes protect
the keys, and only their names are listed.

Each problem names the file and the command that fixes it. ``strict_permissions: false`` (for
containers that mount secrets with their own modes) turns refusals into warnings.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from pathlib import Path

log = logging.getLogger("keyless.keys")


class UnsafeKeyFile(ValueError):
    """A private key file (or its directory) others could read, write or replace; the message names
    the path and the fix, never key bytes."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _mode_and_foreign_owner(path: Path) -> tuple[int, str | None, str]:
    """``path``'s permission bits; its owner's name unless that is root or the daemon's user (None); and the
    daemon's user name, for the fix."""
    info = os.stat(path)
    daemon = os.geteuid()
    owner = None if info.st_uid in (0, daemon) else _user_name(info.st_uid)
    return stat.S_IMODE(info.st_mode), owner, _user_name(daemon)


def key_file_problems(path: Path) -> list[str]:
    """Why the private key at ``path`` is unsafe, each with its fix; ``[]`` when it is safe. A symlink
    is judged by the file it leads to (and that file's directory). Raises ``OSError`` if unreadable."""
    real = Path(os.path.realpath(path))
    mode, owner, daemon = _mode_and_foreign_owner(real)
    problems: list[str] = []
    if owner is not None:
        problems.append(f"owned by {owner}, not by the daemon's user ({daemon}) "
                        f"or root, so another user controls it. Fix: chown {daemon} {real}")
    if mode & 0o022:
        problems.append(f"mode {mode:04o} lets {'every user' if mode & 0o002 else 'the group'} replace the key. "
                        f"Fix: chmod {mode & 0o640:o} {real} (or 600)")
    elif mode & 0o004:
        problems.append(f"mode {mode:04o} lets every user read the private key. "
                        f"Fix: chmod {mode & 0o640:o} {real} (or 600)")
    problems.extend(f"its directory {problem}" for problem in directory_problems(real.parent))
    if real != Path(path) and problems:
        problems[0] = f"(a link to {real}) {problems[0]}"
    return problems


def directory_problems(directory: Path) -> list[str]:
    """Why a directory holding private keys is unsafe (writable or owned by others), each with its fix."""
    mode, owner, daemon = _mode_and_foreign_owner(directory)
    problems: list[str] = []
    if owner is not None:
        problems.append(f"{directory} is owned by {owner}, not by the daemon's user "
                        f"({daemon}) or root, so its owner can replace the keys. "
                        f"Fix: chown {daemon} {directory}")
    if mode & 0o022:
        problems.append(f"{directory} has mode {mode:04o}: {'every user' if mode & 0o002 else 'the group'} can "
                        f"replace or add keys. Fix: chmod {mode & ~0o022:o} {directory}")
    return problems


def check_key_file(path: Path, *, strict: bool = True) -> None:
    """Raise ``UnsafeKeyFile`` naming every problem of ``path`` (only warn when not ``strict``)."""
    try:
        problems = key_file_problems(path)
    except OSError as exc:
        raise UnsafeKeyFile(str(path), f"cannot check its permissions: {exc.strerror or exc}") from None
    if not problems:
        return
    if strict:
        raise UnsafeKeyFile(str(path), "private key refused: " + "; ".join(problems)
                            + " (strict_permissions: false turns this into a warning)")
    log.warning("unsafe private key file %s (loaded: strict_permissions is off): %s", path, "; ".join(problems))


__all__ = ["UnsafeKeyFile", "check_key_file", "directory_problems", "key_file_problems"]
