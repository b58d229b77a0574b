"""``NEED_DATA``: the one sentinel every sans-IO parser in keyless returns when it needs more bytes.

The keyless-protocol framer (``keyless.protocol``) and the TLS engine (``keyless.tls``) both answer
``next_event()`` / ``next_message()`` with it, like h11's ``NEED_DATA``: compare with ``is``.
``Sentinel`` is the base of such one-instance markers (the key server's ``PAUSED`` is another).
"""

from __future__ import annotations

from typing import ClassVar, Final, Self


class Sentinel:
    """A marker type with one instance per subclass (``NeedData() is NEED_DATA``), shown as ``name``."""

    __slots__ = ()
    name: ClassVar[str] = "SENTINEL"
    _instances: ClassVar[dict[type[Sentinel], Sentinel]] = {}

    def __new__(cls) -> Self:
        instance = Sentinel._instances.get(cls)
        if not isinstance(instance, cls):
            instance = Sentinel._instances[cls] = super().__new__(cls)
        return instance

    def __repr__(self) -> str:
        return self.name


class NeedData(Sentinel):
    """The type of ``NEED_DATA``."""

    __slots__ = ()
    name = "NEED_DATA"


NEED_DATA: Final = NeedData()

__all__ = ["NEED_DATA", "NeedData", "Sentinel"]
