"""``httpx`` auth, sync and async, that adds the broker's bearer token and retries once on 401 with a new one.

The retry takes a token from ``force_refresh`` (see ``requests_auth``). In an ``AsyncClient`` the broker is asked
off the event loop, because botocore and urllib block.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncGenerator, Generator, Optional

import httpx

from ._source import TokenSource
from .client import TokenBrokerClient


class TokenBrokerHttpxAuth(httpx.Auth):
    """``httpx.Client(auth=TokenBrokerHttpxAuth(broker, 'bwell', 'system/*.read'))``, or an ``AsyncClient``."""

    # The request is sent twice on a 401, so httpx must have its body in memory.
    requires_request_body = True

    def __init__(self, broker: TokenBrokerClient, client: str, scope: Optional[str] = None, **params: Any) -> None:
        self._source = TokenSource(broker, client, scope, params)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._source.token().authorization
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = self._source.token(force_refresh=True).authorization
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        loop = asyncio.get_running_loop()
        token = await loop.run_in_executor(None, self._source.token)
        request.headers["Authorization"] = token.authorization
        response = yield request
        if response.status_code == 401:
            fresh = await loop.run_in_executor(None, lambda: self._source.token(force_refresh=True))
            request.headers["Authorization"] = fresh.authorization
            yield request
