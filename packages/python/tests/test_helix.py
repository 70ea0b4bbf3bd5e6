"""The helix.fhir.client.sdk hook: called as FhirClient calls its refresh_token_function."""

from __future__ import annotations

import asyncio
import inspect
import unittest
from datetime import datetime, timezone

from token_broker import TokenBrokerClient, TokenBrokerError
from token_broker.helix import helix_refresh_token_function

from .local_broker import local_broker


def refresh_function(scope="demo.read"):
    broker = TokenBrokerClient.http(local_broker().environment["TOKEN_BROKER_URL"])
    return broker, helix_refresh_token_function(broker, "demo", scope)


class Helix(unittest.TestCase):
    def test_has_the_keyword_only_signature_of_helix_refresh_token_function(self):
        _, refresh = refresh_function()
        self.assertTrue(inspect.iscoroutinefunction(refresh))
        parameters = inspect.signature(refresh).parameters
        self.assertEqual(list(parameters), ["url", "status_code", "current_token", "expiry_date", "retry_count"])
        self.assertTrue(all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values()))

    def test_answers_the_first_call_with_a_token_and_its_expiry_date(self):
        _, refresh = refresh_function()
        result = asyncio.run(
            refresh(url=None, status_code=None, current_token=None, expiry_date=None, retry_count=0)
        )
        self.assertIsInstance(result.access_token, str)
        self.assertFalse(result.abort_request)
        self.assertIsNotNone(result.expiry_date.tzinfo)
        remaining = (result.expiry_date - datetime.now(timezone.utc)).total_seconds()
        self.assertGreater(remaining, 3000)

    def test_forces_a_refresh_when_the_fhir_server_refused_the_token(self):
        broker_server = local_broker()
        before = len(broker_server.served(client="demo", forceRefresh=True))
        _, refresh = refresh_function()
        first = asyncio.run(refresh(url=None, status_code=None, current_token=None, expiry_date=None, retry_count=0))
        again = asyncio.run(
            refresh(
                url="https://fhir.example/Patient",
                status_code=401,
                current_token=first.access_token,
                expiry_date=first.expiry_date,
                retry_count=1,
            )
        )
        self.assertIsInstance(again.access_token, str)
        self.assertEqual(len(broker_server.served(client="demo", forceRefresh=True)), before + 1)

    def test_raises_the_broker_error_rather_than_sending_no_token(self):
        _, refresh = refresh_function(scope="demo.admin")
        with self.assertRaises(TokenBrokerError) as caught:
            asyncio.run(refresh(url=None, status_code=None, current_token=None, expiry_date=None, retry_count=0))
        self.assertEqual(caught.exception.code, "invalid_scope")


if __name__ == "__main__":
    unittest.main()
