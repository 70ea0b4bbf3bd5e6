"""The two ways of reaching the broker: its SigV4-signed HTTP API, and invoking the client's Lambda alias.

Both take the caller's AWS credentials from botocore's default chain (environment, shared config and SSO
profiles, web identity, container and instance roles) unless given a botocore session, and both answer the
token response as a dict or raise TokenBrokerError. Neither retries: that is the caller's decision.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Mapping, Optional, Protocol

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import BROKER_CODES, TRANSPORT_ERROR, TokenBrokerError

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_MAX_DESCRIPTION = 300


class Transport(Protocol):
    def fetch(self, client: str, fields: Mapping[str, Any]) -> Dict[str, Any]:
        """The token response for ``client`` with the request fields beside it (scope, audience, ...)."""
        ...

    def close(self) -> None:
        """Releases the connections it keeps, if any."""
        ...


def _printable(text: str) -> str:
    """What a server sent, fit for an error message: printable, and short."""
    cleaned = "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
    return cleaned if len(cleaned) <= _MAX_DESCRIPTION else cleaned[: _MAX_DESCRIPTION - 1] + "\u2026"


def token_response(parsed: Any, client: str, status: Optional[int] = None) -> Dict[str, Any]:
    """Checks a success body; anything else is a transport error that quotes none of it (it may hold a token)."""
    if (
        isinstance(parsed, dict)
        and isinstance(parsed.get("access_token"), str)
        and parsed["access_token"] != ""
        and isinstance(parsed.get("token_type"), str)
        and parsed["token_type"].lower() == "bearer"
        and isinstance(parsed.get("expires_in"), (int, float))
        and not isinstance(parsed.get("expires_in"), bool)
        and parsed["expires_in"] > 0
        and isinstance(parsed.get("scope"), str)
    ):
        return {
            "access_token": parsed["access_token"],
            "token_type": "Bearer",
            "expires_in": parsed["expires_in"],
            "scope": parsed["scope"],
        }
    raise TokenBrokerError(
        TRANSPORT_ERROR,
        "the broker answered success with a body that is not a token response",
        status=status,
        client=client,
    )


def _session(session: Optional[botocore.session.Session]) -> botocore.session.Session:
    return session if session is not None else botocore.session.get_session()


class HttpTransport:
    """``POST {api_url}clients/{client}/token``, signed for ``execute-api`` with the caller's credentials."""

    def __init__(
        self,
        api_url: str,
        *,
        region: Optional[str] = None,
        session: Optional[botocore.session.Session] = None,
        timeout: float = 20.0,
    ) -> None:
        parts = urllib.parse.urlsplit(api_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{api_url!r}: the broker's ApiUrl, an absolute https URL")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ValueError(f"{api_url!r}: plain http only to this machine; use the https ApiUrl")
        self._base = api_url if api_url.endswith("/") else api_url + "/"
        self._session = _session(session)
        self._region = region or self._session.get_config_variable("region") or os.environ.get("AWS_REGION")
        if not self._region:
            raise ValueError("region: the API's region (or AWS_REGION, or a profile's region)")
        self._timeout = timeout

    def fetch(self, client: str, fields: Mapping[str, Any]) -> Dict[str, Any]:
        url = f"{self._base}clients/{urllib.parse.quote(client, safe='')}/token"
        body = json.dumps(dict(fields)).encode() if fields else None
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        credentials = self._session.get_credentials()
        if credentials is None:
            raise TokenBrokerError(TRANSPORT_ERROR, "no AWS credentials found to sign the request", client=client)
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        # Frozen: a refreshing credential cannot change between the key and the session token being read.
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self._region).add_auth(request)
        signed = urllib.request.Request(url, data=body, headers=dict(request.headers.items()), method="POST")
        try:
            with _opener.open(signed, timeout=self._timeout) as response:
                return token_response(_json(response.read()), client, response.status)
        except urllib.error.HTTPError as error:
            raise _http_error(error, client) from None
        except (urllib.error.URLError, OSError) as error:  # refused, DNS, TLS, timeout: no answer at all
            reason = getattr(error, "reason", error)
            raise TokenBrokerError(
                TRANSPORT_ERROR, f"cannot reach the broker at {self._base}: {reason}", client=client
            ) from None

    def close(self) -> None:
        """Nothing to release: each request has a connection of its own."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The signed request stays with the broker: a redirect is an answer, not somewhere to send it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # never carries the input: it may be the token itself
        return None


def _http_error(error: urllib.error.HTTPError, client: str) -> TokenBrokerError:
    status = error.code
    answer = _json(error.read())
    retry_after = error.headers.get("retry-after")
    wait = int(retry_after) if retry_after is not None and retry_after.strip().isdigit() else None
    if isinstance(answer, dict) and answer.get("error") in BROKER_CODES:
        description = answer.get("error_description")
        return TokenBrokerError(
            answer["error"],
            _printable(description if isinstance(description, str) else ""),
            status=status,
            client=client,
            retry_after=wait,
        )
    # API Gateway itself (throttling, a failed function): {"message"} and x-amzn-ErrorType
    error_type = error.headers.get("x-amzn-errortype") or "not the broker"
    message = answer.get("message", "") if isinstance(answer, dict) else ""
    return TokenBrokerError(
        TRANSPORT_ERROR,
        _printable(f"{error_type.split(':')[0]}: {message if isinstance(message, str) else ''}"),
        status=status,
        client=client,
        retry_after=wait,
    )


class LambdaTransport:
    """``lambda:Invoke`` of the broker function through the alias named after the client."""

    def __init__(
        self,
        function_name: str,
        *,
        region: Optional[str] = None,
        session: Optional[botocore.session.Session] = None,
        endpoint_url: Optional[str] = None,
    ) -> None:
        self._function_name = function_name
        self._lambda = _session(session).create_client(
            "lambda",
            region_name=region or os.environ.get("AWS_REGION"),
            # Newer botocore reads AWS_ENDPOINT_URL_LAMBDA by itself; older releases need it passed.
            endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL_LAMBDA") or None,
            # The function may take up to 15 s; one retry for a dropped connection.
            config=Config(connect_timeout=5, read_timeout=20, retries={"total_max_attempts": 2}),
        )

    def fetch(self, client: str, fields: Mapping[str, Any]) -> Dict[str, Any]:
        try:
            response = self._lambda.invoke(
                FunctionName=self._function_name,
                Qualifier=client,
                Payload=json.dumps({"client": client, **fields}),
            )
        except ClientError as error:  # the Invoke call itself: no grant on the alias, no such alias, throttling
            code = error.response.get("Error", {}).get("Code", "ClientError")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise TokenBrokerError(
                TRANSPORT_ERROR, f"lambda:Invoke failed: {code}", status=status, client=client
            ) from None
        except BotoCoreError as error:  # no answer at all: unreachable endpoint, no credentials, timeout
            raise TokenBrokerError(TRANSPORT_ERROR, f"lambda:Invoke failed: {error}", client=client) from None
        answer = _json(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            # The broker's failures: {"errorType": "<code>", "errorMessage": "<description>"}; a timeout or a
            # crash has an errorType that is not one of its codes and is described by its type only.
            detail = answer if isinstance(answer, dict) else {}
            error_type = detail.get("errorType")
            if error_type in BROKER_CODES:
                message = detail.get("errorMessage")
                raise TokenBrokerError(
                    error_type, _printable(message if isinstance(message, str) else ""), client=client
                )
            raise TokenBrokerError(
                TRANSPORT_ERROR,
                _printable(f"the function failed: {error_type if isinstance(error_type, str) else 'unknown'}"),
                client=client,
            )
        return token_response(answer, client)

    def close(self) -> None:
        """Closes the Lambda client's connections."""
        close = getattr(self._lambda, "close", None)
        if close is not None:
            close()
