"""Schemathesis hooks for tests/schemathesis.rs: registry operations are CBOR, sent as the
bytes generated (`contentMediaType: application/cbor`, a string of bytes)."""

import schemathesis


@schemathesis.serializer("application/cbor")
def cbor(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return repr(value).encode()
