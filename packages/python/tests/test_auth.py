"""requests and httpx auth against a local resource server that refuses tokens, and the real local broker."""

from __future__ import annotations

import asyncio
import unittest

from token_broker import TokenBrokerClient

from .local_broker import IN_CI, ResourceServer, local_broker

try:
    import requests

    from token_broker.requests_auth import TokenBrokerAuth
except ImportError:  # pragma: no cover
    requests = None
try:
    import httpx

    from token_broker.httpx_auth import TokenBrokerHttpxAuth
except ImportError:  # pragma: no cover
    httpx = None


def broker_client():
    return TokenBrokerClient.http(local_broker().environment["TOKEN_BROKER_URL"])


class RefusingServer:
    def setUp(self):
        self.broker = local_broker()
        self.forced_before = len(self.broker.served(client="demo", forceRefresh=True))

    def forced(self):
        return len(self.broker.served(client="demo", forceRefresh=True)) - self.forced_before

    def serve(self, refusals):
        server = ResourceServer(refusals)
        self.addCleanup(server.close)
        return server


@unittest.skipIf(requests is None and not IN_CI, "requests is not installed")
class Requests(RefusingServer, unittest.TestCase):
    def test_adds_the_bearer_token(self):
        server = self.serve(0)
        client = broker_client()
        answer = requests.get(server.url, auth=TokenBrokerAuth(client, "demo", "demo.read"), timeout=10)
        self.assertEqual(answer.status_code, 200)
        self.assertEqual(server.authorizations, [client.get_token("demo", "demo.read").authorization])
        self.assertEqual(self.forced(), 0)

    def test_retries_once_on_401_with_a_forced_refresh_and_the_same_body(self):
        server = self.serve(1)
        with requests.Session() as session:
            answer = session.post(server.url, data=b'{"a":1}', auth=TokenBrokerAuth(broker_client(), "demo"), timeout=10)
        self.assertEqual(answer.status_code, 200)
        self.assertEqual([r.status_code for r in answer.history], [401])
        self.assertEqual(len(server.authorizations), 2)
        self.assertTrue(all(a.startswith("Bearer ") for a in server.authorizations))
        self.assertEqual(server.bodies, [b'{"a":1}', b'{"a":1}'])
        self.assertEqual(self.forced(), 1)

    def test_gives_up_after_one_retry(self):
        server = self.serve(5)
        answer = requests.get(server.url, auth=TokenBrokerAuth(broker_client(), "demo"), timeout=10)
        self.assertEqual(answer.status_code, 401)
        self.assertEqual(len(server.authorizations), 2)
        self.assertEqual(self.forced(), 1)


@unittest.skipIf(httpx is None and not IN_CI, "httpx is not installed")
class Httpx(RefusingServer, unittest.TestCase):
    def test_retries_once_on_401_with_a_forced_refresh(self):
        server = self.serve(1)
        with httpx.Client(auth=TokenBrokerHttpxAuth(broker_client(), "demo")) as http:
            answer = http.post(server.url, content=b"body")
        self.assertEqual(answer.status_code, 200)
        self.assertEqual(len(server.authorizations), 2)
        self.assertEqual(server.bodies, [b"body", b"body"])
        self.assertEqual(self.forced(), 1)

    def test_gives_up_after_one_retry(self):
        server = self.serve(5)
        with httpx.Client(auth=TokenBrokerHttpxAuth(broker_client(), "demo")) as http:
            self.assertEqual(http.get(server.url).status_code, 401)
        self.assertEqual(len(server.authorizations), 2)

    def test_works_in_an_async_client(self):
        server = self.serve(1)

        async def fetch():
            async with httpx.AsyncClient(auth=TokenBrokerHttpxAuth(broker_client(), "demo", "demo.read")) as http:
                return await http.get(server.url)

        self.assertEqual(asyncio.run(fetch()).status_code, 200)
        self.assertEqual(len(server.authorizations), 2)
        self.assertEqual(self.forced(), 1)


if __name__ == "__main__":
    unittest.main()
