"""The in-process cache: refresh ahead, one request per key, failures not cached. The real local broker answers;
the client's clock is a fake one it is given, so time moves without waiting."""

from __future__ import annotations

import threading
import unittest

from token_broker import TokenBrokerClient, TokenBrokerError
from token_broker.transports import HttpTransport

from .local_broker import local_broker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class GatedTransport:
    """The real HTTP transport, held at a gate or failing once when a test says so."""

    def __init__(self, inner: HttpTransport) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_next = False
        self.calls = 0

    def fetch(self, client, fields):
        self.calls += 1
        self.entered.set()
        self.gate.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise TokenBrokerError("unavailable", "the token endpoint of client demo could not be reached", status=503)
        return self.inner.fetch(client, fields)


def setup():
    broker = local_broker()
    clock = FakeClock()
    transport = GatedTransport(HttpTransport(broker.environment["TOKEN_BROKER_URL"]))
    return TokenBrokerClient(transport, clock=clock), clock, transport


class Cache(unittest.TestCase):
    def test_keeps_serving_from_the_cache_before_the_refresh_ahead_point(self):
        client, clock, transport = setup()
        token = client.get_token("demo")
        # 3600 s tokens: due when the window (60 s) plus a fifth of the lifetime at most 300 s is left.
        clock.now += token.lifetime - 361
        self.assertIs(client.get_token("demo"), token)
        self.assertEqual(transport.calls, 1)

    def test_renews_from_the_refresh_ahead_point_and_serves_the_renewed_token(self):
        client, clock, transport = setup()
        token = client.get_token("demo")
        clock.now += token.lifetime - 359
        renewed = client.get_token("demo")
        self.assertEqual(transport.calls, 2)
        self.assertIsNot(renewed, token)
        self.assertGreater(renewed.expires_in, 3000)
        self.assertIs(client.get_token("demo"), renewed)

    def test_renews_for_one_caller_while_the_others_get_the_current_token(self):
        client, clock, transport = setup()
        token = client.get_token("demo")
        clock.now += token.lifetime - 200
        transport.gate.clear()
        transport.entered.clear()
        renewal = threading.Thread(target=client.get_token, args=("demo",))
        renewal.start()
        self.assertTrue(transport.entered.wait(10))
        others = [client.get_token("demo") for _ in range(5)]
        self.assertTrue(all(other is token for other in others))
        transport.gate.set()
        renewal.join(10)
        self.assertEqual(transport.calls, 2)

    def test_hands_out_the_current_token_when_its_renewal_fails(self):
        client, clock, transport = setup()
        token = client.get_token("demo")
        clock.now += token.lifetime - 200
        transport.fail_next = True
        self.assertIs(client.get_token("demo"), token)
        # Not cached as a failure: the next call tries again, and renews.
        self.assertIsNot(client.get_token("demo"), token)
        self.assertEqual(transport.calls, 3)

    def test_fails_once_the_token_is_inside_the_window_and_renewal_fails(self):
        client, clock, transport = setup()
        token = client.get_token("demo")
        clock.now += token.lifetime - 30
        transport.fail_next = True
        with self.assertRaises(TokenBrokerError) as caught:
            client.get_token("demo")
        self.assertEqual(caught.exception.code, "unavailable")

    def test_makes_one_request_for_concurrent_callers_of_one_key(self):
        client, _clock, transport = setup()
        transport.gate.clear()
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(client.get_token("demo", "demo.write"))) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        self.assertTrue(transport.entered.wait(10))
        transport.gate.set()
        for thread in threads:
            thread.join(10)
        self.assertEqual(transport.calls, 1)
        self.assertEqual(len(results), 8)
        self.assertTrue(all(result is results[0] for result in results))

    def test_keeps_one_token_per_key(self):
        client, _clock, transport = setup()
        read = client.get_token("demo", "demo.read")
        write = client.get_token("demo", "demo.write")
        default = client.get_token("demo")
        self.assertEqual(transport.calls, 3, "the default scope is a key of its own")
        self.assertEqual((read.scope, write.scope, default.scope), ("demo.read", "demo.write", "demo.read"))

    def test_force_refresh_skips_the_cache_and_its_answer_replaces_the_cached_token(self):
        client, _clock, transport = setup()
        client.get_token("demo")
        forced = client.get_token("demo", force_refresh=True)
        self.assertEqual(transport.calls, 2)
        self.assertIs(client.get_token("demo"), forced)

    def test_asks_the_broker_when_the_cached_token_has_less_than_min_ttl_left(self):
        client, clock, transport = setup()
        token = client.get_token("demo")
        clock.now += token.lifetime - 1000
        self.assertIs(client.get_token("demo", min_ttl=900), token)
        self.assertEqual(transport.calls, 1)
        client.get_token("demo", min_ttl=1200)
        self.assertEqual(transport.calls, 2)

    def test_clear_forgets_every_token(self):
        client, _clock, transport = setup()
        client.get_token("demo")
        client.clear()
        client.get_token("demo")
        self.assertEqual(transport.calls, 2)


if __name__ == "__main__":
    unittest.main()
