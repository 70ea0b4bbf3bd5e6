"""What the HTTP-library auth classes share: the token they put in ``Authorization``, and how to renew it."""

from __future__ import annotations

from typing import Any, Dict, Optional

from .client import Token, TokenBrokerClient


class TokenSource:
    def __init__(self, broker: TokenBrokerClient, client: str, scope: Optional[str], params: Dict[str, Any]) -> None:
        self._broker = broker
        self._client = client
        self._scope = scope
        self._params = params

    def token(self, force_refresh: bool = False) -> Token:
        return self._broker.get_token(self._client, self._scope, force_refresh=force_refresh, **self._params)
