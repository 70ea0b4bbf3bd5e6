"""The one error type of the package: the broker's OAuth-style code, or ``transport_error``."""

from __future__ import annotations

from typing import Optional

#: Codes the broker answers with (its error model); anything else is reported as ``transport_error``.
BROKER_CODES = frozenset(
    {
        "invalid_request",
        "invalid_scope",
        "invalid_target",
        "access_denied",
        "unknown_client",
        "not_found",
        "method_not_allowed",
        "server_error",
        "upstream_error",
        "unavailable",
        "upstream_timeout",
    }
)

TRANSPORT_ERROR = "transport_error"

# Worth a retry with backoff: the provider or a dependency failed, not the request.
_RETRYABLE = frozenset({"unavailable", "upstream_timeout", "upstream_error"})


class TokenBrokerError(Exception):
    """A token the broker did not hand out.

    ``code`` is the broker's error code (``invalid_scope``, ``unavailable``, ...) or ``transport_error`` when the
    answer did not come from the broker (no connection, API Gateway's own refusal, a Lambda API error).
    ``status`` is the HTTP status where there was one; ``retry_after`` the seconds the broker asked to wait
    (a cooldown, or a spent issuance budget). The description never holds a token or a secret.
    """

    def __init__(
        self,
        code: str,
        description: str,
        *,
        status: Optional[int] = None,
        client: Optional[str] = None,
        retry_after: Optional[int] = None,
    ) -> None:
        super().__init__(f"token broker: {code}{'' if status is None else f' (HTTP {status})'}: {description}")
        self.code = code
        self.description = description
        self.status = status
        self.client = client
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed: a failing dependency, a throttle or no connection at all."""
        if self.code == TRANSPORT_ERROR:
            return self.status is None or self.status == 429 or self.status >= 500
        return self.code in _RETRYABLE
