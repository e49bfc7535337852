"""The original Python WebSocket client, unmodified, against pushi.

`pushi.net.client.PushiClient` ships with the original server (PyPI `pushi-service` 0.6.10)
and runs on netius. It never sends anything on an idle connection and hands every frame it
receives, whatever its opcode, to `json.loads`. run.sh starts a server with a 2 s activity
timeout (PUSHI_IDLE_*) so that what happens to an idle subscriber shows in seconds.

Each test runs one netius event loop in this thread: connect, subscribe, wait, publish over
REST, and stop when the event arrives or a deadline passes.
"""

import json
import logging
import os
import time
import unittest
import urllib.parse
import urllib.request
import uuid

from pushi.net.client import PushiClient

HTTP = os.environ.get("PUSHI_HTTP_URL", "http://127.0.0.1:8080/")
WS = os.environ.get("PUSHI_WS_URL", "ws://127.0.0.1:9090/")
IDLE_HTTP = os.environ.get("PUSHI_IDLE_HTTP_URL")
IDLE_WS = os.environ.get("PUSHI_IDLE_WS_URL")
IDLE_TIMEOUT = float(os.environ.get("PUSHI_IDLE_TIMEOUT", "2"))


def uniq(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def http_json(method, url, body=None):
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read().decode("utf-8"))


class Rest(object):
    """The REST calls the test needs: create an app (open creation), log in, publish."""

    def __init__(self, base):
        self.base = base
        self.app = http_json("POST", base + "apps", dict(name=uniq("netius")))
        query = urllib.parse.urlencode(
            dict(app_id=self.app["ident"], app_key=self.app["key"], app_secret=self.app["secret"])
        )
        self.token = http_json("GET", "%slogin?%s" % (base, query))["token"]

    def trigger(self, channel, data, event):
        url = "%sevents?sid=%s" % (self.base, self.token)
        return http_json("POST", url, dict(channel=channel, data=data, event=event, persist=False))


class LogRecorder(logging.Handler):
    """Keeps what netius logs (it reports an exception in a protocol handler this way)."""

    def __init__(self):
        logging.Handler.__init__(self, logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append("%s: %s" % (record.levelname, record.getMessage()))


class Subscriber(object):
    """One PushiClient connection that subscribes to `channel` and waits for `event`."""

    def __init__(self, ws_url, key, channel, event, logs):
        self.ws_url = ws_url
        self.logs = logs
        self.key = key
        self.channel = channel
        self.event = event
        self.subscribed = None
        self.received = []
        self.closed_at = None
        self.stopping = False
        self.started = None
        self.protocol = None
        self.loop = None

    def run(self, idle, publish, deadline):
        """Subscribes, stays idle for `idle` s, calls `publish()`, waits for the event."""
        self.started = time.time()

        def on_connect(protocol):
            # netius logs through a logger of the loop's own, detached from the root logger
            logger = getattr(self.loop, "logger", None)
            if logger is not None and self.logs not in logger.handlers:
                logger.addHandler(self.logs)
            protocol.subscribe_pushi(self.channel, callback=on_subscribe)

        def on_subscribe(channel, data):
            self.subscribed = data
            channel.bind(self.event, on_event)
            self.loop.delay(do_publish, timeout=idle)

        def do_publish():
            publish()

        def on_event(channel, data, mid=None, timestamp=None):
            self.received.append(data)
            self.stop()

        def on_close(protocol):
            # only a close the test did not ask for counts (stop() closes the client itself)
            if not self.stopping:
                self.closed_at = time.time() - self.started

        self.loop, self.protocol = PushiClient.connect_pushi_s(
            url=self.ws_url, client_key=self.key, callback=on_connect
        )
        self.protocol.bind("close", on_close)
        self.loop.delay(self.stop, timeout=deadline)
        self.loop.run_forever()

    def stop(self):
        self.stopping = True
        if self.protocol is not None and not self.protocol.is_closed():
            self.protocol.close()
        self.loop.stop()


class NetiusClientTest(unittest.TestCase):
    def setUp(self):
        self.logs = LogRecorder()

    def log_excerpt(self):
        """The warning and the lines of netius' traceback that say where and what."""
        keep = ("WARNING", "ERROR", "client.py", "Error:", "json.loads", "receive_ws")
        return [line for line in self.logs.lines if any(k in line for k in keep)][:12]

    def run_subscriber(self, http, ws, idle, deadline):
        rest = Rest(http)
        channel, event = uniq("quiet"), "wake"
        subscriber = Subscriber(ws, rest.app["key"], channel, event, self.logs)
        published = []

        def publish():
            published.append(time.time() - subscriber.started)
            rest.trigger(channel, "still there?", event)

        subscriber.run(idle, publish, deadline)
        detail = (
            "subscribed=%r, published at %s s, received=%r, connection closed at %s s, "
            "client state=%r; netius log:\n  %s"
            % (
                subscriber.subscribed,
                ["%.1f" % t for t in published],
                subscriber.received,
                None if subscriber.closed_at is None else "%.1f" % subscriber.closed_at,
                subscriber.protocol.state,
                "\n  ".join(self.log_excerpt()) or "(nothing)",
            )
        )
        return subscriber, published, detail

    def test_subscriber_receives_a_published_event(self):
        subscriber, published, detail = self.run_subscriber(HTTP, WS, idle=0.2, deadline=10)
        self.assertIsNotNone(subscriber.subscribed, detail)
        self.assertEqual(subscriber.subscribed["alias"], [], detail)
        self.assertEqual(len(published), 1, detail)
        self.assertEqual(subscriber.received, ["still there?"], detail)

    @unittest.skipUnless(IDLE_WS, "no short-activity-timeout server (PUSHI_IDLE_WS_URL unset)")
    def test_idle_subscriber_still_receives_after_the_activity_timeout(self):
        # idle for longer than the activity timeout plus the time allowed for a pong
        idle = IDLE_TIMEOUT * 2 + 2
        subscriber, published, detail = self.run_subscriber(
            IDLE_HTTP, IDLE_WS, idle=idle, deadline=idle + 5
        )
        self.assertIsNotNone(subscriber.subscribed, detail)
        self.assertEqual(len(published), 1, detail)
        self.assertIsNone(subscriber.closed_at, "idle connection closed: " + detail)
        self.assertEqual(subscriber.received, ["still there?"], detail)


if __name__ == "__main__":
    unittest.main()
