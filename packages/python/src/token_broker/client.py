"""The caller side of token-broker: tokens from the broker, kept in process until shortly before they expire.

A token is reused while more than ``refresh_window_seconds`` of its life remain. From the refresh-ahead point
(a fifth of its lifetime, at most five minutes, before that) one caller fetches the next token while every
other caller is still handed the current one; if that fetch fails the current token is still handed out.
Concurrent callers of one key share one request. Failures are never cached.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Optional, Tuple

import botocore.session

from .errors import TokenBrokerError
from .transports import HttpTransport, LambdaTransport, Transport

DEFAULT_REFRESH_WINDOW_SECONDS = 60
REFRESH_AHEAD_FRACTION = 0.2
REFRESH_AHEAD_MAX_SECONDS = 300
#: The broker's own bound on minTtl.
MAX_MIN_TTL_SECONDS = 86_400


@dataclasses.dataclass(frozen=True)
class Token:
    """A token the broker handed out. Its ``repr`` leaves out the access token, so logging it leaks nothing."""

    access_token: str = dataclasses.field(repr=False)
    token_type: str
    #: The scope the broker granted, space-delimited.
    scope: str
    #: When it expires, on the client's monotonic clock: the time the request was sent plus ``expires_in``.
    expires_at: float
    #: The lifetime the broker gave it, in seconds.
    lifetime: float
    _clock: Callable[[], float] = dataclasses.field(repr=False, compare=False, default=time.monotonic)

    @property
    def expires_in(self) -> float:
        """Seconds of life left now."""
        return self.expires_at - self._clock()

    @property
    def expiry_date(self) -> datetime:
        """When it expires, as a UTC datetime (for libraries that want one)."""
        return datetime.now(timezone.utc) + timedelta(seconds=max(0.0, self.expires_in))

    @property
    def authorization(self) -> str:
        """The value of an ``Authorization`` header."""
        return f"Bearer {self.access_token}"


_Key = Tuple[str, Optional[str], Optional[str], Optional[str]]


def normalize_scope(scope: str) -> str:
    """The broker's rule: a scope string names a set, so "b a a" and "a b" are one request."""
    return " ".join(sorted(set(scope.split())))


class TokenBrokerClient:
    """Tokens for a client (registry name) of the broker, over ``transport``, cached in this process.

    Build one per process with :meth:`http`, :meth:`lambda_invoke` or :meth:`from_environment`; it is safe to
    share between threads.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        refresh_window_seconds: float = DEFAULT_REFRESH_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(refresh_window_seconds, (int, float)) or refresh_window_seconds < 0:
            raise ValueError("refresh_window_seconds must be a number >= 0")
        self._transport = transport
        self._window = float(refresh_window_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: Dict[_Key, Token] = {}
        self._in_flight: Dict[Tuple[_Key, int, bool], "Future[Token]"] = {}
        # Bumped by clear(), so a request started before it cannot fill the cache after it.
        self._generation = 0

    @classmethod
    def http(
        cls,
        api_url: str,
        *,
        region: Optional[str] = None,
        session: Optional[botocore.session.Session] = None,
        **options: Any,
    ) -> "TokenBrokerClient":
        """Over the SigV4-signed HTTP API: ``api_url`` is the stack's ``ApiUrl`` output."""
        return cls(HttpTransport(api_url, region=region, session=session), **options)

    @classmethod
    def lambda_invoke(
        cls,
        function_name: str,
        *,
        region: Optional[str] = None,
        session: Optional[botocore.session.Session] = None,
        **options: Any,
    ) -> "TokenBrokerClient":
        """By invoking the broker function (the stack's ``FunctionName`` output) through the client's alias."""
        return cls(LambdaTransport(function_name, region=region, session=session), **options)

    @classmethod
    def from_environment(cls, environ: Optional[Dict[str, str]] = None, **options: Any) -> "TokenBrokerClient":
        """``TOKEN_BROKER_URL`` (HTTP) or else ``TOKEN_BROKER_FUNCTION`` (invoke), as ``npm start`` prints them."""
        env = os.environ if environ is None else environ
        if env.get("TOKEN_BROKER_URL"):
            return cls.http(env["TOKEN_BROKER_URL"], **options)
        if env.get("TOKEN_BROKER_FUNCTION"):
            return cls.lambda_invoke(env["TOKEN_BROKER_FUNCTION"], **options)
        raise ValueError("set TOKEN_BROKER_URL (the ApiUrl output) or TOKEN_BROKER_FUNCTION (the FunctionName output)")

    def get_token(
        self,
        client: str,
        scope: Optional[str] = None,
        *,
        audience: Optional[str] = None,
        resource: Optional[str] = None,
        min_ttl: Optional[int] = None,
        force_refresh: bool = False,
    ) -> Token:
        """A token for ``client``: from the cache, or from the broker.

        ``scope`` absent means the client's default scope. ``min_ttl`` asks for a token with at least that many
        seconds left (one in the first half of its life always qualifies). ``force_refresh`` is for a token the
        resource server refused (a 401): the cache is skipped and the broker hands out a token issued within the
        last 30 seconds, fetching one if it has none. Raises :class:`TokenBrokerError`.
        """
        if not isinstance(client, str) or client == "":
            raise TokenBrokerError("invalid_request", "client must be a non-empty string")
        for name, value in (("scope", scope), ("audience", audience), ("resource", resource)):
            if value is not None and not isinstance(value, str):
                raise TokenBrokerError("invalid_request", f"{name} must be a string", client=client)
        if min_ttl is not None and (
            isinstance(min_ttl, bool) or not isinstance(min_ttl, int) or not 0 <= min_ttl <= MAX_MIN_TTL_SECONDS
        ):
            raise TokenBrokerError(
                "invalid_request", f"min_ttl must be a whole number of seconds from 0 to {MAX_MIN_TTL_SECONDS}"
            )
        if not isinstance(force_refresh, bool):
            raise TokenBrokerError("invalid_request", "force_refresh must be True or False", client=client)
        normalized = None if scope is None else normalize_scope(scope)
        key: _Key = (client, normalized, audience, resource)
        fields: Dict[str, Any] = {}
        if normalized is not None:
            fields["scope"] = normalized
        if audience is not None:
            fields["audience"] = audience
        if resource is not None:
            fields["resource"] = resource
        if min_ttl:
            fields["minTtl"] = min_ttl
        if force_refresh:
            fields["forceRefresh"] = True

        with self._lock:
            cached = self._cache.get(key)
            now = self._clock()
            if cached is not None and not force_refresh:
                if self._usable(cached, now) and self._meets(cached, min_ttl or 0, now):
                    # Serve while refreshing: only the caller that starts the renewal waits for it.
                    if not self._due(cached, now) or self._flight(key, 0, False) in self._in_flight:
                        return cached
                elif not self._usable(cached, now):
                    del self._cache[key]
                    cached = None
            flight = self._flight(key, min_ttl or 0, force_refresh)
            pending = self._in_flight.get(flight)
            if pending is None:
                pending = Future()
                self._in_flight[flight] = pending
                owner = True
            else:
                owner = False
        if not owner:
            return pending.result()
        try:
            token = self._fetch(key, client, fields)
        except BaseException as error:
            with self._lock:
                self._in_flight.pop(flight, None)
            fallback = cached if cached is not None and not force_refresh else None
            if (
                isinstance(error, TokenBrokerError)
                and fallback is not None
                and self._usable(fallback, self._clock())
                and self._meets(fallback, min_ttl or 0, self._clock())
            ):
                # A renewal ahead of time that failed: the current token is still good to hand out.
                pending.set_result(fallback)
                return fallback
            pending.set_exception(error)
            raise
        with self._lock:
            self._in_flight.pop(flight, None)
        pending.set_result(token)
        return token

    def close(self) -> None:
        """Releases the transport's connections; the client is not used afterwards."""
        self.clear()
        close = getattr(self._transport, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "TokenBrokerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def clear(self) -> None:
        """Forgets every cached token; requests already in flight still answer their callers but are not cached."""
        with self._lock:
            self._generation += 1
            self._cache.clear()
            self._in_flight.clear()

    def _fetch(self, key: _Key, client: str, fields: Dict[str, Any]) -> Token:
        generation = self._generation
        sent_at = self._clock()
        body = self._transport.fetch(client, fields)
        token = Token(
            access_token=body["access_token"],
            token_type=body["token_type"],
            scope=body["scope"],
            expires_at=sent_at + body["expires_in"],
            lifetime=float(body["expires_in"]),
            _clock=self._clock,
        )
        with self._lock:
            if generation == self._generation and self._usable(token, self._clock()):
                self._cache[key] = token
        return token

    @staticmethod
    def _flight(key: _Key, min_ttl: int, force_refresh: bool) -> Tuple[_Key, int, bool]:
        # Requests that ask more of the token than the cache had share a request only with ones that ask the
        # same: an ordinary one in flight may be answered with the very token a forced refresh must not get back.
        return (key, min_ttl, force_refresh)

    def _usable(self, token: Token, now: float) -> bool:
        return token.expires_at - now > self._window

    def _due(self, token: Token, now: float) -> bool:
        ahead = min(token.lifetime * REFRESH_AHEAD_FRACTION, REFRESH_AHEAD_MAX_SECONDS)
        return token.expires_at - now <= self._window + ahead

    @staticmethod
    def _meets(token: Token, min_ttl: int, now: float) -> bool:
        # The broker's rule: a token in the first half of its life meets any minTtl.
        return token.expires_at - now >= min(min_ttl, token.lifetime / 2)


_default: Optional[TokenBrokerClient] = None
_default_lock = threading.Lock()


def get_token(client: str, scope: Optional[str] = None, **options: Any) -> Token:
    """A token through a client built once from ``TOKEN_BROKER_URL`` or ``TOKEN_BROKER_FUNCTION``."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TokenBrokerClient.from_environment()
        broker = _default
    return broker.get_token(client, scope, **options)
