"""The keyless key server: ``keyless keyserver`` (see docs/keyserver.md).

``wire`` and ``connection`` are the sans-IO protocol side (framing, in-flight cap, replies),
``dispatch`` routes a request to an answer or a key, ``service`` is the asyncio/TLS layer, ``pool``
the RSA thread pool, ``config``/``main``/``workers`` start-up, ``metrics`` the Prometheus metrics.
"""
