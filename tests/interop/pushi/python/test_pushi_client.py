"""The `pushi` Python client (PyPI pushi==0.6.10, unmodified) against the pushi server.

Environment (set by ../run.sh):
  PUSHI_HTTP_URL  e.g. http://127.0.0.1:8080/   (REST base, trailing slash)
  PUSHI_WS_URL    e.g. ws://127.0.0.1:9090/     (WebSocket base, trailing slash)

Delivery is observed with a WebSocket subscriber speaking Pushi's dialect (as the service
package's `pushi.net.client` does): connect to `<ws base><app key>`, `pusher:subscribe` with
`{channel, auth, channel_data}` where `auth` comes from the client's own `API.authenticate`.
"""

import hashlib
import json
import os
import re
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings

import appier
import pushi
from websockets.sync.client import connect as ws_connect

HTTP = os.environ.get("PUSHI_HTTP_URL", "http://127.0.0.1:8080/")
WS = os.environ.get("PUSHI_WS_URL", "ws://127.0.0.1:9090/")
HEX64 = re.compile(r"^[0-9a-f]{64}$")

# netius (appier's HTTP client) and websockets' sync connect() outside a `with` warn; noise only
warnings.filterwarnings("ignore", category=DeprecationWarning)


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


def uniq(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def raw(method, path, query=None, body=None, headers=None):
    """A plain HTTP call (for what the client has no method for): (status, json|text)."""
    url = HTTP + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode("utf-8")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class Subscriber(object):
    """A Pushi-dialect WebSocket connection that records every frame it receives."""

    def __init__(self, app_key):
        self.ws = open_websocket(WS + app_key, open_timeout=5, close_timeout=1)
        first = json.loads(self.ws.recv(timeout=5))
        assert first["event"] == "pusher:connection_established", first
        assert isinstance(first["data"], str), "connection_established data is a JSON string"
        self.socket_id = json.loads(first["data"])["socket_id"]
        self.backlog = []

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass

    def send(self, message):
        self.ws.send(json.dumps(message))

    def wait(self, predicate, timeout=5.0, what="frame"):
        for index, frame in enumerate(self.backlog):
            if predicate(frame):
                return self.backlog.pop(index)
        import time

        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    "timed out waiting for %s; unmatched frames: %r" % (what, self.backlog)
                )
            try:
                frame = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            if predicate(frame):
                return frame
            self.backlog.append(frame)

    def quiet(self, predicate, timeout=0.4):
        """Asserts that no matching frame arrives within `timeout`."""
        try:
            frame = self.wait(predicate, timeout=timeout)
        except AssertionError:
            return
        raise AssertionError("unexpected frame %r" % (frame,))

    def event(self, name, channel=None, timeout=5.0):
        return self.wait(
            lambda f: f.get("event") == name and (channel is None or f.get("channel") == channel),
            timeout=timeout,
            what="event %s on %s" % (name, channel),
        )

    def subscribe(self, channel, auth=None, channel_data=None, spelling="pusher:subscribe"):
        data = dict(channel=channel)
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send(dict(event=spelling, data=data))
        frame = self.wait(
            lambda f: f.get("channel") == channel
            or f.get("event") in ("pusher:error", "pusher:subscription_error"),
            what="reply to subscribe %s" % channel,
        )
        return frame


class PushiClientTest(unittest.TestCase):
    """One app for the class, created through the client's own `create_app`."""

    @classmethod
    def setUpClass(cls):
        anonymous = pushi.API(base_url=HTTP)
        cls.created = anonymous.create_app(uniq("py-interop"))
        cls.app = cls.created
        cls.api = pushi.API(
            app_id=cls.app["ident"],
            app_key=cls.app["key"],
            app_secret=cls.app["secret"],
            base_url=HTTP,
        )
        cls.api.login()
        # what the original Pushi allowed and these tests use: client events on public
        # channels, stored by default
        cls.api.update_app(public_client_events=True, persist_client_events=True)

    def setUp(self):
        self.subscribers = []

    def tearDown(self):
        for subscriber in self.subscribers:
            subscriber.close()

    def subscriber(self):
        subscriber = Subscriber(self.app["key"])
        self.subscribers.append(subscriber)
        return subscriber

    def subscribed(self, channel, **kwargs):
        subscriber = self.subscriber()
        reply = subscriber.subscribe(channel, **kwargs)
        self.assertEqual(reply["event"], "pusher_internal:subscription_succeeded", reply)
        return subscriber

    def new_api(self, app):
        return pushi.API(
            app_id=app["ident"], app_key=app["key"], app_secret=app["secret"], base_url=HTTP
        )

    # -- apps and sessions -------------------------------------------------------------------

    def test_create_app_returns_pushi_credentials(self):
        app = self.created
        for field in ("ident", "key", "secret"):
            self.assertRegex(app[field], HEX64, field)
        self.assertEqual(len({app["ident"], app["key"], app["secret"]}), 3)
        self.assertIsInstance(app["id"], int)
        self.assertTrue(app["name"].startswith("py-interop-"))

    def test_create_app_duplicate_name_is_400(self):
        with self.assertRaises(appier.exceptions.HTTPError) as caught:
            pushi.API(base_url=HTTP).create_app(self.app["name"])
        self.assertEqual(caught.exception.code, 400)
        body = caught.exception.read_json()
        self.assertEqual(body["result"], "error")
        self.assertEqual(body["code"], 400)

    def test_login_token_works_as_query_header_and_cookie(self):
        token = self.api.login()
        self.assertIsInstance(token, str)
        self.assertTrue(token)
        for how in ("query", "header", "cookie"):
            with self.subTest(how=how):
                query = dict(sid=token) if how == "query" else None
                headers = {}
                if how == "header":
                    headers["X-Session-Id"] = token
                if how == "cookie":
                    headers["Cookie"] = "sid=%s" % token
                status, body = raw("GET", "apps", query=query, headers=headers)
                self.assertEqual(status, 200, body)
                self.assertEqual([a["ident"] for a in body["apps"]], [self.app["ident"]])
        status, body = raw("GET", "apps")
        self.assertIn(status, (401, 403), "private route without a session: %r" % (body,))

    def test_login_with_numeric_id(self):
        status, body = raw(
            "GET",
            "login",
            query=dict(
                app_id=str(self.app["id"]), app_key=self.app["key"], app_secret=self.app["secret"]
            ),
        )
        self.assertEqual(status, 200, body)
        self.assertIn("token", body)

    def test_login_with_wrong_secret_fails_without_echoing_it(self):
        wrong = "0" * 64
        api = pushi.API(
            app_id=self.app["ident"], app_key=self.app["key"], app_secret=wrong, base_url=HTTP
        )
        with self.assertRaises(appier.exceptions.HTTPError) as caught:
            api.login()
        # original: 404 echoing the submitted values; pushi: 401 without the secret
        self.assertIn(caught.exception.code, (401, 403, 404))
        self.assertNotIn(wrong, caught.exception.read().decode("utf-8"))

    def test_stale_token_is_renewed_by_the_client(self):
        api = self.new_api(self.app)
        api.token = "f" * 64  # the client retries once with a fresh login on 401/403/440/499
        channel = uniq("stale")
        subscriber = self.subscribed(channel)
        result = api.trigger_event(channel, "after relogin", event="ev")
        self.assertEqual(result, {"result": "success"})
        self.assertNotEqual(api.token, "f" * 64)
        frame = subscriber.event("ev", channel)
        self.assertEqual(frame["data"], "after relogin")

    def test_logout_invalidates_the_token(self):
        api = self.new_api(self.app)
        token = api.login()
        self.assertEqual(raw("GET", "apps", query=dict(sid=token))[0], 200)
        api.logout()
        self.assertIsNone(api.token)
        status, _ = raw("GET", "apps", query=dict(sid=token))
        self.assertIn(status, (401, 403))

    def test_update_app(self):
        app = pushi.API(base_url=HTTP).create_app(uniq("py-update"))
        api = self.new_api(app)
        new_name = uniq("py-renamed")
        api.update_app(name=new_name)  # original answered text/plain (the name); pushi: JSON
        shown = api.get(HTTP + "apps/%s" % app["ident"])
        self.assertEqual(shown["name"], new_name)
        self.assertEqual(shown["ident"], app["ident"])
        self.assertEqual(shown["key"], app["key"], "key is immutable")
        api.update_app(ident="0" * 64, key="1" * 64)  # "safe" fields are ignored
        shown = api.get(HTTP + "apps/%s" % app["ident"])
        self.assertEqual(shown["key"], app["key"])

    def test_update_app_takes_every_setting_and_hides_secrets(self):
        app = pushi.API(base_url=HTTP).create_app(uniq("py-settings"))
        api = self.new_api(app)
        smtp_url = "smtp://user:hunter2@127.0.0.1:2525?sender=noreply@example.com"
        result = api.update_app(
            smtp_url=smtp_url,
            vapid_email="ops@example.com",
            apn_sandbox=True,
            max_payload_bytes=4096,
            client_events=False,
            legacy_auth=True,
            webhooks=[dict(url="https://hooks.example.com/in", event_types=["member_added"])],
            history_max_age_secs=None,
        )
        self.assertNotIn("hunter2", json.dumps(result))
        shown = api.get(HTTP + "apps/%s" % app["ident"])
        settings = shown["settings"]
        self.assertIs(settings["smtp_url"], True, "secrets are reported as set, never shown")
        self.assertNotIn("hunter2", json.dumps(shown))
        self.assertEqual(settings["vapid_email"], "ops@example.com")
        self.assertIs(settings["apn_sandbox"], True)
        self.assertEqual(settings["max_payload_bytes"], 4096)
        self.assertIs(settings["client_events"], False)
        self.assertIs(settings["legacy_auth"], True)
        self.assertEqual(settings["webhooks"][0]["url"], "https://hooks.example.com/in")
        self.assertIsNone(settings["history_max_age_secs"])

    def test_update_app_refuses_bad_values_naming_the_field(self):
        app = pushi.API(base_url=HTTP).create_app(uniq("py-refused"))
        api = self.new_api(app)
        for field, value in (
            ("smtp_url", "ftp://mail.example.com"),
            ("vapid_email", "nobody"),
            ("vapid_key", "not a key"),
            ("max_payload_bytes", 0),
            ("colour", "blue"),
        ):
            with self.subTest(field=field):
                with self.assertRaises(appier.exceptions.HTTPError) as caught:
                    api.update_app(**{field: value})
                self.assertEqual(caught.exception.code, 400)
                message = caught.exception.read_json()["message"]
                self.assertTrue(message.startswith(field + ": "), message)

    def test_webhook_set_with_update_app_is_called(self):
        app = pushi.API(base_url=HTTP).create_app(uniq("py-hooked"))
        api = self.new_api(app)
        with Receiver() as receiver:
            api.update_app(webhooks=[dict(url=receiver.url + "/pusher", event_types=["channel_occupied"])])
            channel = uniq("occupied")
            subscriber = Subscriber(app["key"])
            self.subscribers.append(subscriber)
            reply = subscriber.subscribe(channel)
            self.assertEqual(reply["event"], "pusher_internal:subscription_succeeded", reply)
            body, _headers = receiver.wait(1)[0]
            self.assertIn(
                dict(name="channel_occupied", channel=channel),
                [dict(name=e["name"], channel=e["channel"]) for e in body["events"]],
            )

    def test_readme_subscribe_and_unsubscribe_routes(self):
        user = uniq("reader")
        event = uniq("topic")
        path = "apps/%s/" % self.app["ident"]
        status, record = raw("POST", path + "subscribe", dict(self.sid(), user_id=user, event=event))
        self.assertEqual(status, 200, record)
        self.assertEqual((record["user_id"], record["event"]), (user, event))
        listed = self.api.get(HTTP + "subscriptions", user_id=user)["subscriptions"]
        self.assertEqual([s["event"] for s in listed], [event])
        status, record = raw("POST", path + "unsubscribe", dict(self.sid(), user_id=user, event=event))
        self.assertEqual(status, 200, record)
        self.assertEqual(record["event"], event)
        self.assertEqual(self.api.get(HTTP + "subscriptions", user_id=user)["subscriptions"], [])

    def test_configured_app_logs_in_with_its_derived_ident(self):
        app_id = os.environ.get("PUSHI_ENV_APP_ID")
        if not app_id:
            self.skipTest("run.sh declares no app in the environment")
        key = os.environ["PUSHI_ENV_APP_KEY"]
        secret = os.environ["PUSHI_ENV_APP_SECRET"]
        ident = hashlib.sha256(
            b"pushi app ident\0" + app_id.encode() + b"\0" + key.encode()
        ).hexdigest()
        self.assertNotEqual(ident, key)
        api = pushi.API(app_id=ident, app_key=key, app_secret=secret, base_url=HTTP)
        api.login()
        apps = api.get(HTTP + "apps")["apps"]
        self.assertEqual([(a["ident"], a["key"]) for a in apps], [(ident, key)])

    def test_apps_listing_is_scoped(self):
        result = self.api.get(HTTP + "apps")
        self.assertEqual([a["ident"] for a in result["apps"]], [self.app["ident"]])

    def test_apps_ping_triggers_ping_on_global(self):
        subscriber = self.subscribed("global")
        self.api.get(HTTP + "apps/ping")
        frame = subscriber.event("ping", "global")
        self.assertEqual(frame["data"], "ping")
        self.assertNotIn("mid", frame, "ping is not persisted")

    # -- events ------------------------------------------------------------------------------

    def test_trigger_event_reaches_subscriber_and_history(self):
        channel = uniq("news")
        subscriber = self.subscribed(channel)
        result = self.api.trigger_event(channel, {"a": 1, "b": [1, 2]}, event="upd", subject="s")
        self.assertEqual(result, {"result": "success"})
        frame = subscriber.event("upd", channel)
        self.assertIsInstance(frame["data"], str, "data is always a string on the wire")
        self.assertEqual(json.loads(frame["data"]), {"a": 1, "b": [1, 2]})
        self.assertEqual(frame["subject"], "s", "extra body keys are forwarded")
        self.assertIsInstance(frame["mid"], str)
        self.assertIsInstance(frame["timestamp"], float)

        events = self.api.get(HTTP + "events", count=50)["events"]
        mine = [e for e in events if e["mid"] == frame["mid"]]
        self.assertEqual(len(mine), 1, events)
        stored = mine[0]
        self.assertEqual(stored["channel"], channel)
        self.assertIsNone(stored["owner_id"])
        self.assertEqual(stored["instance"], self.app["ident"])
        self.assertAlmostEqual(stored["timestamp"], frame["timestamp"], places=3)
        self.assertEqual(stored["data"]["channel"], channel)
        self.assertEqual(stored["data"]["event"], "upd")
        self.assertEqual(json.loads(stored["data"]["data"]), {"a": 1, "b": [1, 2]})
        for field in ("id", "enabled", "created", "modified", "meta", "description"):
            self.assertIn(field, stored)

    def test_create_event_without_persist(self):
        channel = uniq("volatile")
        subscriber = self.subscribed(channel)
        self.api.create_event(channel, "plain", event="tick", persist=False)
        frame = subscriber.event("tick", channel)
        self.assertEqual(frame["data"], "plain")
        self.assertNotIn("mid", frame)
        self.assertNotIn("timestamp", frame)
        events = self.api.get(HTTP + "events", count=100)["events"]
        self.assertFalse([e for e in events if e["channel"] == channel])

    def test_events_listing_newest_first_with_count(self):
        channel = uniq("ordered")
        for n in range(3):
            self.api.trigger_event(channel, {"n": n}, event="seq")
        events = self.api.get(HTTP + "events", count=2)["events"]
        self.assertEqual(len(events), 2)
        self.assertEqual([json.loads(e["data"]["data"])["n"] for e in events], [2, 1])
        self.assertGreater(events[0]["id"], events[1]["id"])

    def test_default_channel_is_global_and_event_is_message(self):
        subscriber = self.subscribed("global")
        status, body = raw(
            "POST", "events", query=dict(sid=self.api.get_token()), body=dict(data="hello")
        )
        self.assertEqual(status, 200, body)
        frame = subscriber.event("message", "global")
        self.assertEqual(frame["data"], "hello")

    def test_multi_channel_trigger_delivers_one_copy(self):
        c1, c2 = uniq("m1"), uniq("m2")
        subscriber = self.subscriber()
        for channel in (c1, c2):
            reply = subscriber.subscribe(channel)
            self.assertEqual(reply["event"], "pusher_internal:subscription_succeeded")
        self.api.trigger_event([c1, c2], "both", event="multi")
        frame = subscriber.event("multi")
        self.assertEqual(frame["channel"], c1)
        subscriber.quiet(lambda f: f.get("event") == "multi")

    def test_falsy_data_is_a_400_error_envelope(self):
        with self.assertRaises(appier.exceptions.HTTPError) as caught:
            self.api.trigger_event(uniq("x"), "", event="empty")
        self.assertEqual(caught.exception.code, 400)  # original: 500
        body = caught.exception.read_json()
        self.assertEqual(body["result"], "error")
        self.assertIn("message", body)

    # -- subscriptions and personal channels -------------------------------------------------

    def test_subscriptions_create_list_delete(self):
        user, event = uniq("user"), uniq("topic")
        record = self.api.create_subscription(user, event)
        self.assertEqual((record["user_id"], record["event"]), (user, event))
        self.assertIn("id", record)
        self.assertEqual(record["instance"], self.app["ident"])
        again = self.api.subscribe(user, event)
        self.assertEqual(again["id"], record["id"], "existing (user_id, event) is returned")
        listed = self.api.get(HTTP + "subscriptions", user_id=user)["subscriptions"]
        self.assertEqual([(s["user_id"], s["event"]) for s in listed], [(user, event)])
        deleted = self.api.delete_subscription(user, event)
        self.assertEqual(deleted["event"], event)
        listed = self.api.get(HTTP + "subscriptions", user_id=user)["subscriptions"]
        self.assertEqual(listed, [])
        self.assertEqual(self.api.unsubscribe(user, event), {"result": "success"})

    def test_personal_channel_aliases_and_history(self):
        user = uniq("pu")
        news, sports = uniq("news"), uniq("sports")
        self.api.create_subscription(user, news)
        self.api.subscribe(user, sports)
        # published while the user is offline
        self.api.trigger_event(news, {"n": 1}, event="headline")
        self.api.trigger_event(sports, {"n": 2}, event="score")
        self.api.trigger_event(news, {"n": 3}, event="volatile", persist=False)

        personal = "personal-%s" % user
        subscriber = self.subscriber()
        reply = subscriber.subscribe(
            personal, auth=self.api.authenticate(personal, subscriber.socket_id)
        )
        self.assertEqual(reply["event"], "pusher_internal:subscription_succeeded", reply)
        data = json.loads(reply["data"])
        self.assertEqual(data["name"], personal)
        self.assertEqual(data["alias"], [news, sports])
        self.assertEqual(
            [(e["channel"], e["data"]["event"]) for e in data["events"]],
            [(sports, "score"), (news, "headline")],
        )
        # live events arrive under the aliased channel's real name
        self.api.trigger_event(news, "live", event="flash")
        frame = subscriber.event("flash")
        self.assertEqual(frame["channel"], news)
        # pushi extensions: pusher:latest on personal-, trigger on personal-
        subscriber.send(dict(event="pusher:latest", data=dict(channel=personal)))
        latest = subscriber.event("pusher_internal:latest", personal)
        events = json.loads(latest["data"])["events"]
        self.assertEqual(
            [e["data"]["event"] for e in events], ["flash", "score", "headline"]
        )
        self.api.trigger_event(personal, "to you", event="direct")
        self.assertEqual(subscriber.event("direct")["data"], "to you")
        # deleting the subscription removes the alias for the next subscription
        self.api.delete_subscription(user, sports)
        other = self.subscriber()
        reply = other.subscribe(personal, auth=self.api.authenticate(personal, other.socket_id))
        self.assertEqual(json.loads(reply["data"])["alias"], [news])

    def personal_reply(self, user):
        personal = "personal-%s" % user
        subscriber = self.subscriber()
        reply = subscriber.subscribe(
            personal, auth=self.api.authenticate(personal, subscriber.socket_id)
        )
        self.assertEqual(reply["event"], "pusher_internal:subscription_succeeded", reply)
        return subscriber, json.loads(reply["data"])

    def test_personal_history_starts_with_the_subscription(self):
        user, topic = uniq("pu"), uniq("topic")
        self.api.trigger_event(topic, "before", event="early")
        self.api.create_subscription(user, topic)
        self.api.trigger_event(topic, "after", event="late")
        _, data = self.personal_reply(user)
        self.assertEqual([e["data"]["event"] for e in data["events"]], ["late"])

    def test_personal_history_reply_has_the_latest_ten(self):
        user, topic = uniq("pu"), uniq("topic")
        self.api.create_subscription(user, topic)
        for n in range(12):
            self.api.trigger_event(topic, {"n": n}, event="e%d" % n)
        subscriber, data = self.personal_reply(user)
        self.assertEqual(
            [json.loads(e["data"]["data"])["n"] for e in data["events"]], list(range(11, 1, -1))
        )
        personal = "personal-%s" % user
        subscriber.send(
            dict(event="pusher:latest", data=dict(channel=personal, skip=10, count=5))
        )
        latest = subscriber.event("pusher_internal:latest", personal)
        self.assertEqual(
            [json.loads(e["data"]["data"])["n"] for e in json.loads(latest["data"])["events"]],
            [1, 0],
        )

    def test_personal_history_one_association_per_multi_channel_trigger(self):
        user, c1, c2 = uniq("pu"), uniq("c1"), uniq("c2")
        self.api.create_subscription(user, c1)
        self.api.create_subscription(user, c2)
        self.api.trigger_event([c1, c2], "twice?", event="multi")
        subscriber, data = self.personal_reply(user)
        self.assertEqual([e["channel"] for e in data["events"]], [c1])
        # and a live multi-channel trigger reaches the personal subscriber once
        self.api.trigger_event([c2, c1], "live", event="multi-live")
        frame = subscriber.event("multi-live")
        self.assertEqual(frame["channel"], c2)
        subscriber.quiet(lambda f: f.get("event") == "multi-live")

    def test_non_string_data_is_json_text(self):
        channel = uniq("types")
        subscriber = self.subscribed(channel)
        for value in (42, True, [1, "two"], 1.5):
            with self.subTest(value=value):
                self.api.trigger_event(channel, value, event="typed", persist=False)
                frame = subscriber.event("typed", channel)
                self.assertIsInstance(frame["data"], str)
                self.assertEqual(json.loads(frame["data"]), value)

    def test_personal_channel_needs_a_signature(self):
        user = uniq("pu")
        self.api.create_subscription(user, uniq("t"))
        subscriber = self.subscriber()
        reply = subscriber.subscribe("personal-%s" % user, auth=self.app["key"] + ":" + "0" * 64)
        self.assertNotEqual(reply["event"], "pusher_internal:subscription_succeeded")

    # -- private / presence with the client's authenticate() ---------------------------------

    def test_private_channel_with_client_signature(self):
        channel = uniq("private-ops")
        subscriber = self.subscriber()
        auth = self.api.authenticate(channel, subscriber.socket_id)
        reply = subscriber.subscribe(channel, auth=auth)
        self.assertEqual(reply["event"], "pusher_internal:subscription_succeeded", reply)
        self.api.trigger_event(channel, {"secret": True}, event="op")
        self.assertEqual(json.loads(subscriber.event("op", channel)["data"]), {"secret": True})

    def test_bad_signature_keeps_the_connection(self):
        channel = uniq("private-ops")
        subscriber = self.subscriber()
        reply = subscriber.subscribe(channel, auth=self.app["key"] + ":" + "0" * 64)
        self.assertNotEqual(reply["event"], "pusher_internal:subscription_succeeded")
        # original: TCP dropped; pushi: error frame, connection usable
        public = uniq("after")
        reply = subscriber.subscribe(public)
        self.assertEqual(reply["event"], "pusher_internal:subscription_succeeded")

    def test_presence_with_legacy_signature_needs_legacy_auth(self):
        app = pushi.API(base_url=HTTP).create_app(uniq("py-legacy"))
        api = self.new_api(app)
        room = uniq("presence-room")

        def join(user):
            subscriber = Subscriber(app["key"])
            self.subscribers.append(subscriber)
            reply = subscriber.subscribe(
                room,
                auth=api.authenticate(room, subscriber.socket_id),
                channel_data=dict(user_id=user, user_info=dict(n=user)),
            )
            return subscriber, reply

        _, refused = join("alice")
        self.assertNotEqual(refused["event"], "pusher_internal:subscription_succeeded", refused)
        api.update_app(legacy_auth=True)
        alice, reply = join("alice")
        self.assertEqual(reply["event"], "pusher_internal:subscription_succeeded", reply)
        self.assertEqual(
            json.loads(reply["data"])["members"], {"alice": {"user_id": "alice", "user_info": {"n": "alice"}}}
        )
        bob, reply = join("bob")
        self.assertEqual(sorted(json.loads(reply["data"])["members"]), ["alice", "bob"])
        added = alice.event("pusher:member_added", room)
        self.assertEqual(json.loads(added["member"])["user_id"], "bob")
        bob.close()
        removed = alice.event("pusher:member_removed", room)
        self.assertEqual(json.loads(removed["member"])["user_id"], "bob")

    # -- sockets -----------------------------------------------------------------------------

    def test_sockets_listing(self):
        channel = uniq("sock")
        subscriber = self.subscribed(channel)
        sockets = self.api.get(HTTP + "sockets")["sockets"]  # original: always 500
        mine = [s for s in sockets if s["socket_id"] == subscriber.socket_id]
        self.assertEqual(len(mine), 1, sockets)
        self.assertIn(channel, mine[0].get("channel", mine[0].get("channels")))
        status, one = raw(
            "POST", "sockets/%s" % subscriber.socket_id, query=dict(sid=self.api.get_token())
        )
        self.assertEqual((status, one), (200, {"channels": [channel]}))

    def test_client_generic_post_without_body_sends_sid_as_form_field(self):
        # `API.post(url)` with no JSON body sends its params (the sid) as an urlencoded form
        # body; appier/Pushi read `sid` from form fields too (spec 7.2), so this works there
        channel = uniq("sock")
        subscriber = self.subscribed(channel)
        one = self.api.post(HTTP + "sockets/%s" % subscriber.socket_id)
        self.assertEqual(one, {"channels": [channel]})

    def test_records_carry_the_appier_id_field(self):
        # spec 12: keep record field names incl. `_id` (REST output of every record)
        app = pushi.API(base_url=HTTP).create_app(uniq("py-fields"))
        api = self.new_api(app)
        api.trigger_event(uniq("f"), "x", event="e")
        event = api.get(HTTP + "events", count=1)["events"][0]
        subscription = api.create_subscription(uniq("u"), uniq("t"))
        for name, record in (("app", app), ("event", event), ("subscription", subscription)):
            with self.subTest(record=name):
                self.assertIn("_id", record, "%s record: %r" % (name, sorted(record)))

    # -- wire dialect details the Python WS client relies on ---------------------------------

    def test_underscore_spelling_and_latest(self):
        channel = uniq("spell")
        subscriber = self.subscriber()
        reply = subscriber.subscribe(channel, spelling="pusher_subscribe")
        self.assertEqual(reply["event"], "pusher_internal:subscription_succeeded")
        self.assertEqual(
            json.loads(reply["data"]), dict(name=channel, members={}, alias=[], events=[])
        )
        subscriber.send(dict(event="say", channel=channel, data={"x": 1}, echo=True))
        echoed = subscriber.event("say", channel)
        self.assertEqual(json.loads(echoed["data"]), {"x": 1})
        self.assertIn("mid", echoed, "client events persist by default")
        subscriber.send(dict(event="pusher_latest", data=dict(channel=channel, skip=0, count=5)))
        latest = subscriber.event("pusher_internal:latest", channel)
        events = json.loads(latest["data"])["events"]
        self.assertEqual([e["mid"] for e in events], [echoed["mid"]])
        self.assertEqual(events[0]["owner_id"], subscriber.socket_id)
        subscriber.send(dict(event="pusher:unsubscribe", data=dict(channel=channel)))
        gone = subscriber.event("pusher_internal:unsubscription_succeeded", channel)
        self.assertEqual(json.loads(gone["data"])["name"], channel)

    # -- handler subscriptions and direct messaging (offline delivery) -----------------------

    def sid(self):
        return dict(sid=self.api.get_token())

    def test_handler_web_delivers_triggered_events(self):
        with Receiver() as receiver:
            url = receiver.url + "/hook"
            event = uniq("hooked")
            record = self.api.create_web(url, event)
            self.assertEqual((record["url"], record["event"]), (url, event))
            # Creating it again returns the same record (no duplicate).
            self.assertEqual(self.api.create_web(url, event)["id"], record["id"])
            status, listed = raw("GET", "webs", dict(self.sid(), url=url))
            self.assertEqual(status, 200)
            self.assertEqual([(s["url"], s["event"]) for s in listed["subscriptions"]], [(url, event)])
            self.api.trigger_event(channel=event, data=dict(title="T"), event="update")
            body, headers = receiver.wait(1)[0]
            self.assertEqual(body["channel"], event)
            self.assertEqual(body["event"], "update")
            self.assertEqual(json.loads(body["data"]), dict(title="T"))
            self.assertTrue(headers.get("X-Pushi-Delivery"))
            # The client puts the raw URL in the path; the encoded form works as well.
            deleted = self.api.delete_web(url, event)
            self.assertEqual((deleted["url"], deleted["event"]), (url, event))
            self.api.create_web(url, event)
            status, deleted = raw(
                "DELETE", "webs/%s/%s" % (urllib.parse.quote(url, safe=""), event), self.sid()
            )
            self.assertEqual((status, deleted["url"]), (200, url))

    def test_handler_apn(self):
        token = "ab" * 32
        event = uniq("apn")
        record = self.api.create_apn(token, event)
        self.assertEqual((record["token"], record["event"]), (token, event))
        listed = self.api.list_apns(token=token)["subscriptions"]
        self.assertEqual([s["event"] for s in listed], [event])
        self.assertEqual(self.api.delete_apn(token, event)["event"], event)
        self.assertEqual(self.api.list_apns(token=token)["subscriptions"], [])

    def test_handler_smtp(self):
        email = "%s@example.invalid" % uniq("u")
        event = uniq("mail")
        record = self.api.create_smtp(email, event)
        self.assertEqual((record["email"], record["event"]), (email, event))
        listed = self.api.list_smtps(email=email)["subscriptions"]
        self.assertEqual([s["event"] for s in listed], [event])
        self.assertEqual(self.api.delete_smtp(email, event)["event"], event)

    def test_handler_web_push(self):
        # The browser keys of RFC 8291's worked example: a valid P-256 point and auth secret.
        p256dh = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
        auth = "BTBZMqHH6r4Tts7J_aSIgg"
        with Receiver() as receiver:
            endpoint = receiver.url + "/push/%s" % uniq("ep")
            event = uniq("wp")
            record = self.api.create_web_push(endpoint, p256dh, auth, event)
            self.assertEqual((record["endpoint"], record["event"]), (endpoint, event))
            listed = self.api.list_web_pushes(endpoint=endpoint)["subscriptions"]
            self.assertEqual([s["event"] for s in listed], [event])
            key = self.api.get_vapid_public_key()
            self.assertEqual(len(key["vapid_public_key"]), 87)
            self.api.trigger_event(channel=event, data=dict(title="Hi"))
            _body, headers = receiver.wait(1, raw_body=True)[0]
            self.assertEqual(headers.get("Content-Encoding"), "aes128gcm")
            self.assertIn("k=%s" % key["vapid_public_key"], headers.get("Authorization"))
            self.api.delete_web_push(endpoint, event=event)
            self.assertEqual(self.api.list_web_pushes(endpoint=endpoint)["subscriptions"], [])

    def test_handler_web_push_rejects_invalid_keys(self):
        with self.assertRaises(appier.exceptions.HTTPError) as raised:
            self.api.create_web_push("http://127.0.0.1:9/push", "p" * 20, "a" * 16, uniq("wp"))
        self.assertEqual(raised.exception.code, 400)

    def test_messaging_webhook_delivers_every_time(self):
        with Receiver() as receiver:
            for _ in range(2):
                result = self.api.send_messaging_webhook([receiver.url + "/m"], dict(hello="world"))
                self.assertTrue(result["success"], result)
            bodies = [body for body, _ in receiver.wait(2)]
            self.assertEqual(bodies, [dict(hello="world")] * 2)


class Receiver(object):
    """A local HTTP server recording the requests offline delivery makes."""

    def __init__(self):
        import http.server
        import threading

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                received.append((self.rfile.read(length), self.headers))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *args):
        self.server.shutdown()
        self.server.server_close()

    def wait(self, count, raw_body=False, timeout=10):
        deadline = time.time() + timeout
        while len(self.received) < count and time.time() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, "expected %d requests, got %d" % (count, len(self.received))
        if raw_body:
            return list(self.received)
        return [(json.loads(body.decode("utf-8")), headers) for body, headers in self.received]


class HealthTest(unittest.TestCase):
    def test_health(self):
        status, body = raw("GET", "health")
        self.assertEqual(status, 200)
        self.assertEqual(body.get("status"), "ok")


if __name__ == "__main__":
    unittest.main(verbosity=2)
