"""Python client of token-broker: OAuth2 access tokens without holding the client secret.

    from token_broker import TokenBrokerClient
    broker = TokenBrokerClient.http("https://abc123.execute-api.us-east-1.amazonaws.com/v1/")
    token = broker.get_token("bwell", "system/*.read")

``requests`` and ``httpx`` auth live in ``token_broker.requests_auth`` and ``token_broker.httpx_auth``, and the
helix.fhir.client.sdk hook in ``token_broker.helix``.
"""

from .client import Token, TokenBrokerClient, get_token, normalize_scope
from .errors import TRANSPORT_ERROR, TokenBrokerError
from .transports import HttpTransport, LambdaTransport

__version__ = "0.1.0"

__all__ = [
    "TRANSPORT_ERROR",
    "HttpTransport",
    "LambdaTransport",
    "Token",
    "TokenBrokerClient",
    "TokenBrokerError",
    "get_token",
    "normalize_scope",
]
