"""Interop suite for pushi driven by the PyPI `pusher` 3 server SDK.

The SDK covers the HTTP API (trigger, trigger_batch, channels_info, channel_info, users_info,
send_to_user, terminate_user_connections) and signs subscriptions (authenticate,
authenticate_user); a small raw WebSocket client (the `websockets` package) plays the subscriber.

Run through tests/interop/run.sh, which starts the server and sets the PUSHI_* variables.
"""

import base64
import json
import os
import queue
import threading
import time
import unittest
import uuid

import nacl.secret
import pusher
from pusher.errors import PusherBadAuth, PusherBadRequest, PusherBadStatus
from pusher.requests import RequestsBackend
from pusher.version import VERSION as PUSHER_VERSION
from websockets.sync.client import connect as ws_connect

HOST = os.environ.get("PUSHI_HOST", "127.0.0.1")
HTTP_PORT = int(os.environ["PUSHI_HTTP_PORT"])
WS_PORT = int(os.environ["PUSHI_WS_PORT"])
# PUSHI_TLS=1: https/wss only, with a throwaway CA that run.sh passes in SSL_CERT_FILE and
# REQUESTS_CA_BUNDLE.
TLS = os.environ.get("PUSHI_TLS") == "1"
WS_SCHEME = "wss" if TLS else "ws"
APP_ID = os.environ["PUSHI_APP_ID"]
KEY = os.environ["PUSHI_APP_KEY"]
SECRET = os.environ["PUSHI_APP_SECRET"]
MASTER_KEY_B64 = base64.b64encode(bytes([9]) * 32).decode()

WAIT = 5.0


def open_websocket(url, **options):
    """`websockets.sync.client.connect`, retried once over wss:// only: that client reads and
    writes one SSL socket from two threads, and about one TLS open in 500 stalls before its
    request leaves (the server then times the silent connection out; python-websockets#1387).
    Node `ws` (0 in 1,500) and the stdlib `ssl` module alone (0 in 2,000) never stall against
    the same server, so the retry covers the client, not pushi."""
    try:
        return ws_connect(url, **options)
    except TimeoutError:
        if not url.startswith("wss://"):
            raise
        return ws_connect(url, **options)


class TestCABackend(RequestsBackend):
    """The SDK's own requests backend, verifying against the test CA: the SDK pins its bundled
    public CA list when `ssl=True`, which a throwaway CA is (rightly) not on."""

    def __init__(self, client, **options):
        super().__init__(client, **options)
        if TLS:
            self.options["verify"] = os.environ["REQUESTS_CA_BUNDLE"]


def sdk(**overrides):
    options = dict(
        app_id=APP_ID,
        key=KEY,
        secret=SECRET,
        host=HOST,
        port=HTTP_PORT,
        ssl=TLS,
        backend=TestCABackend,
        timeout=WAIT,
        encryption_master_key_base64=MASTER_KEY_B64,
    )
    options.update(overrides)
    return pusher.Pusher(**options)


def uid(prefix):
    return "%s%s" % (prefix, uuid.uuid4().hex[:12])


class RawClient:
    """A minimal Pusher protocol 7 client over a raw WebSocket, recording every message."""

    def __init__(self, key=KEY, port=WS_PORT):
        url = "%s://%s:%d/app/%s?protocol=7&client=python-interop&version=1.0" % (
            WS_SCHEME,
            HOST,
            port,
            key,
        )
        self.ws = open_websocket(url, open_timeout=WAIT, close_timeout=1)
        self.messages = []
        self.cond = threading.Condition()
        self.closed = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        established = self.wait_for("pusher:connection_established")
        data = json.loads(established["data"])
        self.socket_id = data["socket_id"]

    def _read(self):
        try:
            for raw in self.ws:
                msg = json.loads(raw)
                with self.cond:
                    self.messages.append(msg)
                    self.cond.notify_all()
        except Exception:  # closed: recorded below
            pass
        with self.cond:
            self.closed = (self.ws.close_code, self.ws.close_reason)
            self.cond.notify_all()

    def send(self, event, data, channel=None):
        msg = {"event": event, "data": data}
        if channel is not None:
            msg["channel"] = channel
        self.ws.send(json.dumps(msg))

    def find(self, event, channel=None):
        with self.cond:
            for m in self.messages:
                if m.get("event") == event and (channel is None or m.get("channel") == channel):
                    return m
        return None

    def wait_for(self, event, channel=None, timeout=WAIT, pred=None):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.messages:
                    if m.get("event") == event and (channel is None or m.get("channel") == channel):
                        if pred is None or pred(m):
                            return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        "timed out waiting for %s on %s; got %s" % (event, channel, self.messages[-10:])
                    )
                self.cond.wait(remaining)

    def wait_closed(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.closed is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("socket not closed; got %s" % self.messages[-10:])
                self.cond.wait(remaining)
            return self.closed

    def subscribe(self, channel, auth=None, channel_data=None, wait=True):
        data = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send("pusher:subscribe", data)
        if wait:
            return self.wait_for("pusher_internal:subscription_succeeded", channel)
        return None

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


class InteropTest(unittest.TestCase):
    def setUp(self):
        self.pusher = sdk()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def client(self, **kwargs):
        c = RawClient(**kwargs)
        self.clients.append(c)
        return c

    def subscribed_private(self, c, channel, user=None):
        """Subscribes with a signature from the Python SDK's authenticate()."""
        custom = None
        if user is not None:
            custom = {"user_id": user, "user_info": {"name": user.title()}}
        auth = self.pusher.authenticate(channel=channel, socket_id=c.socket_id, custom_data=custom)
        return c.subscribe(channel, auth["auth"], auth.get("channel_data")), auth

    def marker(self, c, channel):
        """Triggers a marker and waits for it: everything triggered before it has arrived."""
        m = uid("m")
        self.pusher.trigger(channel, "marker", {"m": m})
        c.wait_for("marker", channel, pred=lambda msg: json.loads(msg["data"])["m"] == m)


class TestTrigger(InteropTest):
    def test_trigger_delivered_with_data(self):
        c = self.client()
        ch = uid("py-public-")
        c.subscribe(ch)
        payload = {"hello": "world", "n": 42, "list": [1, 2, 3], "text": "héllo ✓"}
        result = self.pusher.trigger(ch, "py-event", payload)
        self.assertEqual(result, {})
        msg = c.wait_for("py-event", ch)
        self.assertIsInstance(msg["data"], str, "channel event data must be a JSON string")
        self.assertEqual(json.loads(msg["data"]), payload)

    def test_trigger_multiple_channels(self):
        c = self.client()
        chans = [uid("py-multi-") for _ in range(3)]
        for ch in chans:
            c.subscribe(ch)
        self.pusher.trigger(chans, "multi", {"k": "v"})
        for ch in chans:
            self.assertEqual(json.loads(c.wait_for("multi", ch)["data"]), {"k": "v"})

    def test_socket_id_exclusion(self):
        excluded = self.client()
        other = self.client()
        ch = uid("py-excl-")
        excluded.subscribe(ch)
        other.subscribe(ch)
        self.pusher.trigger(ch, "skip", {"x": 1}, socket_id=excluded.socket_id)
        other.wait_for("skip", ch)
        self.marker(excluded, ch)
        self.assertIsNone(excluded.find("skip"), "excluded socket received the event")

    def test_trigger_batch(self):
        c = self.client()
        a, b = uid("py-batch-a-"), uid("py-batch-b-")
        c.subscribe(a)
        c.subscribe(b)
        result = self.pusher.trigger_batch(
            [
                {"channel": a, "name": "one", "data": {"i": 1}},
                {"channel": b, "name": "two", "data": {"i": 2}},
            ]
        )
        self.assertIsInstance(result, dict)
        self.assertEqual(json.loads(c.wait_for("one", a)["data"]), {"i": 1})
        self.assertEqual(json.loads(c.wait_for("two", b)["data"]), {"i": 2})

    def test_encrypted_trigger_is_relayed_opaque_and_decrypts(self):
        c = self.client()
        ch = uid("private-encrypted-py-")
        _, auth = self.subscribed_private(c, ch)
        self.assertIn("shared_secret", auth)
        self.pusher.trigger(ch, "sealed", {"secret": "swordfish"})
        msg = c.wait_for("sealed", ch)
        self.assertNotIn("swordfish", msg["data"])
        wire = json.loads(msg["data"])
        key = base64.b64decode(auth["shared_secret"])
        plain = nacl.secret.SecretBox(key).decrypt(
            base64.b64decode(wire["ciphertext"]), base64.b64decode(wire["nonce"])
        )
        self.assertEqual(json.loads(plain), {"secret": "swordfish"})


class TestAuth(InteropTest):
    def test_private_subscription_signed_by_python_sdk(self):
        c = self.client()
        ch = uid("private-py-")
        self.subscribed_private(c, ch)
        self.pusher.trigger(ch, "ok", {})
        c.wait_for("ok", ch)

    def test_private_subscription_with_bad_signature(self):
        c = self.client()
        ch = uid("private-py-")
        c.subscribe(ch, auth="%s:%s" % (KEY, "0" * 64), wait=False)
        err = c.wait_for("pusher:subscription_error", ch)
        data = err["data"] if isinstance(err["data"], dict) else json.loads(err["data"])
        self.assertEqual(data.get("status"), 401, data)
        # The connection stays usable.
        pub = uid("py-public-")
        c.subscribe(pub)

    def test_presence_subscription_signed_by_python_sdk(self):
        # json.dumps puts spaces after separators: the server must verify the exact string.
        c1, c2 = self.client(), self.client()
        ch = uid("presence-py-")
        self.subscribed_private(c1, ch, user="ann")
        ok, _ = self.subscribed_private(c2, ch, user="ben")
        presence = json.loads(ok["data"])["presence"]
        self.assertEqual(presence["count"], 2)
        self.assertEqual(sorted(presence["ids"]), ["ann", "ben"])
        self.assertEqual(presence["hash"]["ann"], {"name": "Ann"})
        added = c1.wait_for("pusher_internal:member_added", ch)
        self.assertEqual(json.loads(added["data"])["user_id"], "ben")


class TestQueries(InteropTest):
    def test_channels_info_with_prefix_filter(self):
        prefix = uid("pyq") + "-"
        c = self.client()
        c.subscribe(prefix + "a")
        c.subscribe(prefix + "b")
        c.subscribe(uid("py-unrelated-"))
        info = self.pusher.channels_info(prefix_filter=prefix)
        self.assertEqual(sorted(info["channels"]), [prefix + "a", prefix + "b"])

    def test_channels_info_user_count(self):
        prefix = uid("presence-pyq") + "-"
        c1, c2 = self.client(), self.client()
        self.subscribed_private(c1, prefix + "room", user="u1")
        self.subscribed_private(c2, prefix + "room", user="u2")
        info = self.pusher.channels_info(prefix_filter=prefix, attributes=["user_count"])
        self.assertEqual(info["channels"], {prefix + "room": {"user_count": 2}})

    def test_channel_info(self):
        c1, c2 = self.client(), self.client()
        ch = uid("py-info-")
        c1.subscribe(ch)
        c2.subscribe(ch)
        info = self.pusher.channel_info(ch, attributes=["subscription_count"])
        self.assertEqual(info["occupied"], True, info)
        self.assertEqual(info["subscription_count"], 2, info)
        empty = self.pusher.channel_info(uid("py-empty-"))
        self.assertEqual(empty["occupied"], False, empty)

    def test_presence_channel_info_and_users(self):
        c1, c2, c3 = self.client(), self.client(), self.client()
        ch = uid("presence-py-users-")
        self.subscribed_private(c1, ch, user="kim")
        self.subscribed_private(c2, ch, user="lee")
        self.subscribed_private(c3, ch, user="lee")
        info = self.pusher.channel_info(ch, attributes=["user_count"])
        self.assertEqual(info["occupied"], True, info)
        self.assertEqual(info["user_count"], 2, info)
        users = self.pusher.users_info(ch)
        self.assertEqual(sorted(u["id"] for u in users["users"]), ["kim", "lee"])

    def test_users_info_on_public_channel_is_bad_request(self):
        c = self.client()
        ch = uid("py-public-")
        c.subscribe(ch)
        with self.assertRaises(PusherBadRequest):
            self.pusher.users_info(ch)


class TestErrors(InteropTest):
    def test_bad_secret(self):
        bad = sdk(secret="wrong-secret-wrong-secret")
        with self.assertRaises(PusherBadAuth):
            bad.trigger(uid("py-x-"), "e", {})
        with self.assertRaises(PusherBadAuth):
            bad.channels_info()

    def test_oversized_payload(self):
        # The SDK itself refuses > 30 KB in trigger (and > 10 KB in trigger_batch), so send 20 KB.
        with self.assertRaises(PusherBadStatus) as ctx:
            self.pusher.trigger(uid("py-big-"), "big", "x" * 20000)
        self.assertTrue(str(ctx.exception).startswith("413"), str(ctx.exception))

    def test_unknown_app_id(self):
        other = sdk(app_id="987654")
        with self.assertRaises(PusherBadStatus) as ctx:
            other.trigger(uid("py-x-"), "e", {})
        self.assertTrue(str(ctx.exception).startswith("404"), str(ctx.exception))


class TestUsers(InteropTest):
    def signed_in(self, user_id):
        c = self.client()
        auth = self.pusher.authenticate_user(c.socket_id, {"id": user_id, "user_info": {"n": 1}})
        c.send("pusher:signin", {"auth": auth["auth"], "user_data": auth["user_data"]})
        ok = c.wait_for("pusher:signin_success")
        data = ok["data"] if isinstance(ok["data"], dict) else json.loads(ok["data"])
        self.assertEqual(json.loads(data["user_data"])["id"], user_id)
        # As pusher-js does after signin_success.
        c.subscribe("#server-to-user-%s" % user_id)
        return c

    def test_send_to_user(self):
        user = uid("pyuser-")
        c = self.signed_in(user)
        self.pusher.send_to_user(user, "hello-user", {"for": user})
        msg = c.wait_for("hello-user", "#server-to-user-%s" % user)
        self.assertEqual(json.loads(msg["data"]), {"for": user})

    def test_terminate_user_connections(self):
        user = uid("pyuser-")
        victim = self.signed_in(user)
        bystander = self.signed_in(uid("pyuser-"))
        # pusher 3.3 posts to /users/{id}/terminate_connections, without the /apps/{id} prefix
        # the other routes have, signed over that path: the app is known only from auth_key.
        try:
            result = self.pusher.terminate_user_connections(user)
        except PusherBadStatus as err:
            self.fail(
                "POST /users/%s/terminate_connections (the path PyPI pusher %s sends) was refused: %s"
                % (user, PUSHER_VERSION, err)
            )
        self.assertIsInstance(result, dict)
        victim.wait_closed()
        time.sleep(0.3)
        self.assertIsNone(bystander.closed, "a bystander's socket was closed")


if __name__ == "__main__":
    unittest.main(verbosity=2)
