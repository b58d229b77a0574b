"""TLS alerts (RFC 8446 §6) and the one exception every protocol failure is raised as."""

from __future__ import annotations

from enum import IntEnum


class AlertLevel(IntEnum):
    WARNING = 1
    FATAL = 2


class AlertDescription(IntEnum):
    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    bad_certificate = 42
    unsupported_certificate = 43
    certificate_revoked = 44
    certificate_expired = 45
    certificate_unknown = 46
    illegal_parameter = 47
    unknown_ca = 48
    access_denied = 49
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    inappropriate_fallback = 86
    user_canceled = 90
    missing_extension = 109
    unsupported_extension = 110
    unrecognized_name = 112
    bad_certificate_status_response = 113
    unknown_psk_identity = 115
    certificate_required = 116
    no_application_protocol = 120


class TLSAlert(Exception):
    """A protocol failure: the connection sends ``description`` as a fatal alert and closes.

    The message is for logs only and never carries secret material.
    """

    def __init__(self, description: AlertDescription, message: str = "") -> None:
        super().__init__(f"{description.name}: {message}" if message else description.name)
        self.description = description
        self.message = message


class TLSUsageError(Exception):
    """The caller misused the connection object (e.g. called it after it was closed or poisoned)."""

