"""get_token over both transports, against the real local broker (npm start's dev server)."""

from __future__ import annotations

import os
import unittest
from unittest import mock

import token_broker
from token_broker import TokenBrokerClient, TokenBrokerError

from .local_broker import closed_port, local_broker


def http_client(**options):
    broker = local_broker()
    return TokenBrokerClient.http(broker.environment["TOKEN_BROKER_URL"], **options)


def lambda_client(test, **options):
    broker = local_broker()
    client = TokenBrokerClient.lambda_invoke(broker.environment["TOKEN_BROKER_FUNCTION"], **options)
    test.addCleanup(client.close)
    return client


class OverHttp(unittest.TestCase):
    def test_gets_a_token_signed_with_sigv4_and_serves_the_next_from_its_cache(self):
        broker = local_broker()
        before = len(broker.served(channel="http", client="demo"))
        client = http_client()
        token = client.get_token("demo")
        self.assertEqual(token.token_type, "Bearer")
        self.assertEqual(token.scope, "demo.read")
        self.assertGreater(token.expires_in, 3000)
        self.assertIs(client.get_token("demo"), token)
        self.assertEqual(len(broker.served(channel="http", client="demo")), before + 1)

    def test_asks_for_the_normalized_scope_set_and_shares_one_token_between_its_spellings(self):
        broker = local_broker()
        client = http_client()
        before = len(broker.served(channel="http", requestedScope="demo.read demo.write"))
        token = client.get_token("demo", "demo.write demo.read  demo.read")
        self.assertEqual(token.scope, "demo.read demo.write")
        self.assertIs(client.get_token("demo", "demo.read demo.write"), token)
        self.assertEqual(len(broker.served(channel="http", requestedScope="demo.read demo.write")), before + 1)

    def test_keeps_the_broker_error_code_and_status_and_caches_no_failure(self):
        client = http_client()
        for _ in range(2):
            with self.assertRaises(TokenBrokerError) as caught:
                client.get_token("demo", "demo.admin")
            self.assertEqual(caught.exception.code, "invalid_scope")
            self.assertEqual(caught.exception.status, 400)
            self.assertFalse(caught.exception.retryable)
        with self.assertRaises(TokenBrokerError) as caught:
            client.get_token("nobody")
        self.assertEqual((caught.exception.code, caught.exception.status), ("unknown_client", 404))

    def test_answers_a_bad_signature_with_the_gateway_refusal(self):
        broker = local_broker()
        with mock.patch.dict(os.environ, {"AWS_SECRET_ACCESS_KEY": "not-the-key"}):
            client = TokenBrokerClient.http(broker.environment["TOKEN_BROKER_URL"])
            with self.assertRaises(TokenBrokerError) as caught:
                client.get_token("demo")
        self.assertEqual(caught.exception.status, 403)
        self.assertIn(caught.exception.code, ("access_denied", "transport_error"))

    def test_reports_an_unreachable_broker_as_a_transport_error_without_a_status(self):
        client = TokenBrokerClient.http(f"http://127.0.0.1:{closed_port()}/", region="us-east-1")
        with self.assertRaises(TokenBrokerError) as caught:
            client.get_token("demo")
        self.assertEqual(caught.exception.code, "transport_error")
        self.assertIsNone(caught.exception.status)
        self.assertTrue(caught.exception.retryable)
        self.assertIn("cannot reach the broker", caught.exception.description)

    def test_sends_force_refresh_and_min_ttl_to_the_broker(self):
        broker = local_broker()
        client = http_client()
        first = client.get_token("demo")
        forced = client.get_token("demo", force_refresh=True)
        # Issued moments ago: the broker's answer to every forced refresh for 30 s, without a provider call.
        self.assertEqual(forced.access_token, first.access_token)
        self.assertTrue(broker.served(channel="http", client="demo", forceRefresh=True))
        # The cache had 3600 s: 600 is met without asking; more than half the lifetime is met by a fresh token.
        requests_before = len(broker.served(channel="http", client="demo"))
        client.get_token("demo", min_ttl=600)
        client.get_token("demo", min_ttl=86_400)
        self.assertEqual(len(broker.served(channel="http", client="demo")), requests_before)

    def test_refuses_bad_arguments_without_a_request(self):
        client = TokenBrokerClient.http(f"http://127.0.0.1:{closed_port()}/", region="us-east-1")
        for call in (
            lambda: client.get_token(""),
            lambda: client.get_token("demo", 42),
            lambda: client.get_token("demo", min_ttl=-1),
            lambda: client.get_token("demo", min_ttl=1.5),
            lambda: client.get_token("demo", min_ttl=86_401),
            lambda: client.get_token("demo", force_refresh="yes"),
        ):
            with self.assertRaises(TokenBrokerError) as caught:
                call()
            self.assertEqual(caught.exception.code, "invalid_request")

    def test_refuses_plain_http_to_another_host(self):
        with self.assertRaises(ValueError):
            TokenBrokerClient.http("http://broker.example/v1/", region="us-east-1")

    def test_never_shows_the_access_token_in_its_repr_or_its_errors(self):
        broker = local_broker()
        token = http_client().get_token("demo")
        self.assertNotIn(token.access_token, repr(token))
        self.assertNotIn(token.access_token, str(token))
        self.assertIn("scope='demo.read'", repr(token))
        for secret in broker.client_secrets:
            self.assertNotIn(secret, repr(token))


class ByInvoke(unittest.TestCase):
    def test_invokes_the_client_alias_and_caches_the_token(self):
        broker = local_broker()
        before = len(broker.served(channel="invoke", client="demo"))
        client = lambda_client(self)
        token = client.get_token("demo", "demo.read")
        self.assertEqual(token.scope, "demo.read")
        self.assertIs(client.get_token("demo", "demo.read"), token)
        self.assertEqual(len(broker.served(channel="invoke", client="demo")), before + 1)

    def test_keeps_the_broker_error_code_of_a_function_error(self):
        with self.assertRaises(TokenBrokerError) as caught:
            lambda_client(self).get_token("demo", "demo.admin")
        self.assertEqual(caught.exception.code, "invalid_scope")
        self.assertIsNone(caught.exception.status)

    def test_reports_an_unreachable_lambda_endpoint_as_a_transport_error(self):
        with mock.patch.dict(os.environ, {"AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{closed_port()}"}):
            client = lambda_client(self)
        with self.assertRaises(TokenBrokerError) as caught:
            client.get_token("demo")
        self.assertEqual(caught.exception.code, "transport_error")
        self.assertIn("lambda:Invoke failed", caught.exception.description)


class FromTheEnvironment(unittest.TestCase):
    def test_picks_http_when_token_broker_url_is_set_and_invoke_otherwise(self):
        broker = local_broker()
        env = broker.environment
        over_http = TokenBrokerClient.from_environment({"TOKEN_BROKER_URL": env["TOKEN_BROKER_URL"]})
        by_invoke = TokenBrokerClient.from_environment({"TOKEN_BROKER_FUNCTION": env["TOKEN_BROKER_FUNCTION"]})
        self.addCleanup(by_invoke.close)
        self.assertIsInstance(over_http._transport, token_broker.HttpTransport)
        self.assertIsInstance(by_invoke._transport, token_broker.LambdaTransport)
        with self.assertRaises(ValueError):
            TokenBrokerClient.from_environment({})

    def test_module_level_get_token_uses_the_exported_variables(self):
        local_broker()
        scope = "demo.read"
        token = token_broker.get_token("demo", scope)
        self.assertEqual(token.scope, scope)
        self.assertIs(token_broker.get_token("demo", scope), token)


if __name__ == "__main__":
    unittest.main()
