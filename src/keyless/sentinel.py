"""``NEED_DATA``: the one sentinel every sans-IO parser in keyless returns when it needs more bytes.

The keyless-protocol framer (``keyless.protocol``) and the TLS engine (``keyless.tls``) both answer
``next_event()`` / ``next_message()`` with it, like h11's ``NEED_DATA``: compare with ``is``.
"""

from __future__ import annotations

from typing import Final


class NeedData:
    """The type of ``NEED_DATA`` (one instance: ``NeedData() is NEED_DATA``)."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()

__all__ = ["NEED_DATA", "NeedData"]
