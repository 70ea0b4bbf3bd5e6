"""``requests`` auth that adds the broker's bearer token and retries once on 401 with a new one.

A resource server that answers 401 refused the token (revoked, rotated signing keys, clock skew): the request
goes once more with a token from ``force_refresh``, which the broker limits to one provider call per key every
30 seconds across its fleet, so a loop of refusals cannot run up the provider's rate limit. A second 401 is the
answer.
"""

from __future__ import annotations

from typing import Any, Optional

import requests
import requests.auth

from ._source import TokenSource
from .client import TokenBrokerClient


class TokenBrokerAuth(requests.auth.AuthBase):
    """``session.get(url, auth=TokenBrokerAuth(broker, 'bwell', 'system/*.read'))``."""

    def __init__(self, broker: TokenBrokerClient, client: str, scope: Optional[str] = None, **params: Any) -> None:
        self._source = TokenSource(broker, client, scope, params)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._source.token().authorization
        request.register_hook("response", self._retry_once_on_401)
        return request

    def _retry_once_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, "_token_broker_retried", False):
            return response
        body = request.body
        if body is not None and not isinstance(body, (bytes, str)):
            # A streamed body can be sent twice only if it can be rewound to where it started.
            position = getattr(request, "_body_position", None)
            if not hasattr(body, "seek") or not isinstance(position, int):
                return response
            body.seek(position)
        fresh = self._source.token(force_refresh=True)
        response.content  # noqa: B018 - read the refused answer, so that its connection can be reused
        response.close()
        retry = request.copy()
        retry.headers["Authorization"] = fresh.authorization
        retry._token_broker_retried = True  # type: ignore[attr-defined]
        answer = response.connection.send(retry, **kwargs)
        answer.history.append(response)
        answer.request = retry
        return answer
