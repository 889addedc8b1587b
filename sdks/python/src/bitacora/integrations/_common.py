"""What the web integrations share: the client address behind trusted proxies, header
limits, and the per-route audit decorator."""

from __future__ import annotations

import functools
import inspect
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from .._client import AsyncBitacora, Bitacora

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Header values go into events: bound them so one request cannot make an oversized event.
MAX_HEADER = 512


class TrustedProxies:
    """The addresses whose forwarded headers are believed (addresses or CIDR blocks).

    Empty (the default) believes no forwarded header: the left-most `X-Forwarded-For` entry is
    whatever the client wrote, so believing it from anyone lets any user forge their IP."""

    def __init__(self, proxies: Iterable[str] = ()) -> None:
        if isinstance(proxies, str):
            proxies = [proxies]
        self.networks: list[Network] = [
            ipaddress.ip_network(p.strip(), strict=False) for p in proxies
        ]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in n for n in self.networks)

    def client_ip(
        self, peer: str | None, forwarded_for: str | None = None, real_ip: str | None = None
    ) -> str | None:
        """The client's address: the peer's, unless the peer is a trusted proxy; then walk
        `X-Forwarded-For` from the right (the hops our proxies appended), skipping trusted
        hops, and take the first untrusted one. `X-Real-IP` is used when there is no
        `X-Forwarded-For`. Returns None when nothing parses as an IP (the server would refuse
        the event otherwise)."""
        addr = parse_ip(peer)
        if addr is None or not self or not self.trusts(addr):
            return str(addr) if addr is not None else None
        if forwarded_for:
            for hop in reversed(forwarded_for.split(",")):
                hop_addr = parse_ip(hop)
                if hop_addr is None:
                    # Garbage in the chain: stop at the last hop we could trust.
                    break
                addr = hop_addr
                if not self.trusts(hop_addr):
                    break
            return str(addr)
        if real_ip:
            real = parse_ip(real_ip)
            if real is not None:
                return str(real)
        return str(addr)


def parse_ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a header or a socket: tolerates spaces, `[v6]:port` and `v4:port`."""
    if not value:
        return None
    v = value.strip()
    if v.startswith("["):
        v = v[1:].split("]", 1)[0]
    elif v.count(":") == 1:
        v = v.split(":", 1)[0]
    try:
        return ipaddress.ip_address(v.split("%", 1)[0])
    except ValueError:
        return None


def header(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    return value[:MAX_HEADER] or None


def forwarded(value: str | bytes | None) -> str | None:
    """A forwarded-for chain, not truncated like other headers: its right end is what counts."""
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def actor_of(actor: Callable[[Any], Any] | None, request: Any) -> Callable[[], Any] | None:
    """The lazy actor of one request: `actor(request)`, called when an event is logged."""
    if actor is None:
        return None
    return lambda: actor(request)


F = TypeVar("F", bound=Callable[..., Any])


def audit(
    client: Bitacora | AsyncBitacora,
    action: str,
    *,
    target: Callable[..., Mapping[str, Any] | None] | Mapping[str, Any] | None = None,
    **fields: Any,
) -> Callable[[F], F]:
    """Logs one event per call of the decorated view (sync or async): outcome `success` when
    it returns, `failure` (and re-raised) when it raises. `target` may be a function of the
    view's arguments. Actor, IP, user agent and request id come from the audit context that the
    middleware opened.

        @app.post("/reports/{report_id}/export")
        @audit(client, "report.export", target=lambda report_id, **_: {"type": "report",
                                                                        "id": report_id})
        async def export(report_id: str): ...
    """

    def target_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, Any] | None:
        if callable(target):
            try:
                return target(*args, **kwargs)
            except Exception:
                return None
        return target

    fixed_outcome = fields.pop("outcome", None)

    def record(args: tuple[Any, ...], kwargs: dict[str, Any], ok: bool) -> None:
        client.log(
            action,
            target=target_of(args, kwargs),
            outcome=fixed_outcome or ("success" if ok else "failure"),
            **fields,
        )

    def decorate(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = await fn(*args, **kwargs)
                except BaseException:
                    record(args, kwargs, False)
                    raise
                record(args, kwargs, True)
                return result

            return cast(F, awrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                result = fn(*args, **kwargs)
            except BaseException:
                record(args, kwargs, False)
                raise
            record(args, kwargs, True)
            return result

        return cast(F, wrapper)

    return decorate
