"""After start and after each reload: does a configured key server hold the key of every certificate?

A certificate whose key no key server holds fails every full handshake, while the key servers answer
pings and the edge looks ready. One signature per such site over a fixed message tells (the key servers
answer "key not found", 0x02). It runs in the background — start-up never waits for key servers — and
says what it found once per site: a site whose key servers cannot be reached is tried again on the
readiness interval until they answer.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidSignature

from keyless.edge.sites import SiteTable
from keyless.keys.verify import verify_signature

log = logging.getLogger("keyless.edge")

PROBE_MESSAGE = b"keyless edge: is the key of this certificate on a key server?"


async def warn_unheld_keys(sites: SiteTable, source: Path | None, retry_interval: float,
                           first_pass: asyncio.Event | None = None) -> None:
    """Log a warning for each site whose key servers answer "key not found"; until each site got an answer.
    ``first_pass`` is set once every site was asked once (answered or postponed; each ask is bounded by the
    key-server client's own timeout), so start-up can say "ready" after the probe signatures, not during."""
    from keyless.client.errors import BadOpcodeError, KeyNotFoundError, KeyServerError

    where = f"{source}: " if source is not None else ""
    pending = {index: site for index, site in enumerate(sites.sites) if site.group is not None}
    if not pending and first_pass is not None:
        first_pass.set()
    while pending:
        for index, site in list(pending.items()):
            group = site.group
            assert group is not None  # filtered above
            key = cast(Any, group.remote_key(site.certified.chain[0]))
            schemes = site.certified.tls13_schemes or site.certified.tls12_schemes
            try:
                signature = await key.sign(schemes[0], PROBE_MESSAGE)
                verify_signature(site.certified.chain[0].public_key(), schemes[0], PROBE_MESSAGE, signature)
            except InvalidSignature:
                log.warning("%scertificates[%d] (%s): the key servers sign with a key that does not belong to %s "
                            "(fix: load the certificate's own key on the key servers)",
                            where, index, site.config.label, site.config.chain)
            except KeyNotFoundError:
                servers = ", ".join(f"{host}:{port}" for host, port in site.config.key_servers)
                log.warning("%scertificates[%d] (%s): no configured key server (%s) holds the key of %s; every full "
                            "handshake for it will fail (fix: load its key on the key servers, or change key_servers)",
                            where, index, site.config.label, servers, site.config.chain)
            except BadOpcodeError:
                if not site.certified.key_type.startswith("mldsa"):
                    log.debug("key check of certificates[%d]: the key servers refuse the opcode", index)
                else:
                    sites.withdraw(site)
                    log.warning("%scertificates[%d] (%s): the key servers do not implement ML-DSA (keyless opcodes "
                                "0xC0-0xC2 answered 0x05): this certificate is withdrawn, clients get another "
                                "certificate of its names, or a failed handshake if there is none (fix: run keyless "
                                "key servers, or remove this certificate)", where, index, site.config.label)
            except KeyServerError as exc:  # the key is there (the server answered about it): not our concern here
                log.debug("key check of certificates[%d]: %s", index, exc)
            except Exception as exc:  # unreachable, timeout: ask again later
                log.debug("key check of certificates[%d] postponed: %s", index, exc)
                continue
            del pending[index]
        if first_pass is not None:
            first_pass.set()
        if pending:
            await asyncio.sleep(retry_interval)


__all__ = ["warn_unheld_keys"]
