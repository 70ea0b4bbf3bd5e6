"""A drop-in ``refresh_token_function`` for helix.fhir.client.sdk's FhirClient.

``FhirClient().refresh_token_function(helix_refresh_token_function(broker, 'bwell', 'system/*.read'))`` and the
FHIR client asks the broker for its token instead of holding a client secret. helix calls the function before
its first request and again when the FHIR server answers 401; on a 401 the token comes from ``force_refresh``.
A failure raises TokenBrokerError, so the FHIR call fails with the broker's code rather than going out without a
token.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from typing import Any, Awaitable, Callable, Optional

from .client import TokenBrokerClient

try:  # the SDK's own result type when it is installed, so isinstance checks in it hold
    from helix_fhir_client_sdk.function_types import RefreshTokenResult  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - exercised where the SDK is not installed

    @dataclasses.dataclass
    class RefreshTokenResult:  # type: ignore[no-redef]
        """The fields of helix_fhir_client_sdk.function_types.RefreshTokenResult."""

        access_token: Optional[str]
        expiry_date: Optional[datetime]
        abort_request: Optional[bool]


RefreshTokenFunction = Callable[..., Awaitable[Any]]


def helix_refresh_token_function(
    broker: TokenBrokerClient, client: str, scope: Optional[str] = None, **params: Any
) -> RefreshTokenFunction:
    """The async callable helix's ``RefreshTokenFunction`` protocol describes (keyword-only arguments)."""

    async def refresh_token(
        *,
        url: Optional[str] = None,
        status_code: Optional[int] = None,
        current_token: Optional[str] = None,
        expiry_date: Optional[datetime] = None,
        retry_count: Optional[int] = None,
    ) -> RefreshTokenResult:
        # The FHIR server refused the token it was sent: not that one again.
        force_refresh = status_code == 401 and current_token is not None
        loop = asyncio.get_running_loop()
        token = await loop.run_in_executor(
            None, lambda: broker.get_token(client, scope, force_refresh=force_refresh, **params)
        )
        return RefreshTokenResult(access_token=token.access_token, expiry_date=token.expiry_date, abort_request=False)

    return refresh_token
