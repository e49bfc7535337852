// pushi.js — wire-faithful stand-in for Pushi's browser client (Pushi.VERSION 0.6.10).
//
// ORIGIN: the upstream file (`src/extras/js/pushi.js` of hivesolutions/pushi, Apache License 2.0,
// Copyright (c) 2008-2024 Hive Solutions Lda.) is NOT shipped in either PyPI package
// (`pushi-service` 0.6.10 wheel and sdist only carry the Python sources), so it could not be
// vendored from a registry. This file is an independent re-implementation, written for the
// pushi interop suite from the behavioural specification (shared/spec/pushi.md §5, §6, §10.1).
// It reproduces what the original puts on the wire and how it routes what it receives,
// including its quirks:
//   * WS URL = baseUrl + appKey; instances cached per app key in a page-global map
//     (PUSHI_CONNECTIONS): a second `new Pushi(sameKey, ...)` is a clone sharing the socket;
//   * only `pusher:connection_established` is processed until connected; its `data` is a JSON
//     string parsed for `socket_id`;
//   * callbacks receive the event name as their first argument;
//   * messages whose `channel` is not a known Channel are dropped unless it starts with
//     `peer-`; a message WITHOUT a `channel` key makes the original throw a TypeError inside
//     its onmessage handler (it calls `channel.startsWith`) — reproduced here on purpose;
//   * `pusher_internal:*` data and `member` are JSON-parsed; the event `data` is passed raw;
//   * subscribe() of `private-`/`presence-`/`personal-` names goes through subscribePrivate():
//     `GET <authEndpoint>?socket_id=<id>&channel=<name>` (channel NOT URL-encoded) via
//     XMLHttpRequest, then `pusher:subscribe` with `{channel, auth, channel_data}` (the
//     channel_data object passed through as is); every other name (including `peer-`) is
//     subscribed without auth;
//   * a subscription reply with `alias` creates a Channel for each alias and fires its
//     `subscribe`; the unsubscription reply fires `unsubscribe` for each alias;
//   * sendEvent/sendChannel default echo=false, persist=true; latest defaults skip=0,
//     count=10 and is allowed for known channels or `peer-` names;
//   * on close: socketId/channels cleared, `disconnect` fired and (non-clones) the socket is
//     reopened after `timeout` ms — also after an explicit close().
// Not reproduced: the Web Push helpers and login()/logout() (HTTP session helpers), which the
// interop suite does not drive through the browser client.
//
// Runs as a classic browser script (globals) or CommonJS (`{Pushi, Channel, Observable}`).
// It needs the globals `WebSocket` and, for private channels, `XMLHttpRequest`.

var PUSHI_CONNECTIONS = {};

// ---------------------------------------------------------------------------------------------
// Observable: bind/unbind/trigger; listeners get the event name first (like the original)

function Observable() {
    this.events = {};
}

Observable.prototype.bind = function (name, listener, oneshot) {
    listener.oneshot = Boolean(oneshot);
    (this.events[name] = this.events[name] || []).push(listener);
};

Observable.prototype.unbind = function (name, listener) {
    var list = this.events[name] || [];
    var at = list.indexOf(listener);
    if (at >= 0) list.splice(at, 1);
};

Observable.prototype.trigger = function (name) {
    var list = (this.events[name] || []).slice();
    var fired = [];
    for (var i = 0; i < list.length; i++) {
        list[i].apply(this, arguments);
        if (list[i].oneshot) fired.push(list[i]);
    }
    for (var j = 0; j < fired.length; j++) this.unbind(name, fired[j]);
};

// ---------------------------------------------------------------------------------------------
// Channel

function Channel(pushi, name) {
    this.pushi = pushi;
    this.name = name;
    this.data = null;
    this.subscribed = false;
    this.events = {};
}

Channel.prototype.bind = Observable.prototype.bind;
Channel.prototype.unbind = Observable.prototype.unbind;
Channel.prototype.trigger = Observable.prototype.trigger;

Channel.prototype.setsubscribe = function (data) {
    var aliases = (data && data.alias) || [];
    for (var i = 0; i < aliases.length; i++) {
        // every alias becomes a channel of its own, "subscribed" with empty data
        this.pushi.channels[aliases[i]] = new Channel(this.pushi, aliases[i]);
        this.pushi.onsubscribe(aliases[i], {});
    }
    this.data = data;
    this.subscribed = true;
    this.trigger("subscribe", data);
};

Channel.prototype.setunsubscribe = function (data) {
    var aliases = (data && data.alias) || [];
    for (var i = 0; i < aliases.length; i++) this.pushi.onunsubscribe(aliases[i], {});
    this.subscribed = false;
    this.trigger("unsubscribe", data);
};

Channel.prototype.setlatest = function (data) {
    this.trigger("latest", data);
};

Channel.prototype.setmessage = function (event, data, mid, timestamp) {
    this.trigger(event, data, mid, timestamp);
};

Channel.prototype.send = function (event, data, echo, persist) {
    this.pushi.sendChannel(event, data, this.name, echo, persist);
};

Channel.prototype.unsubscribe = function (callback) {
    this.pushi.unsubscribe(this.name, callback);
};

Channel.prototype.latest = function (skip, count, callback) {
    this.pushi.latest(this.name, skip, count, callback);
};

// ---------------------------------------------------------------------------------------------
// Pushi

function Pushi(appKey, options) {
    this.init(appKey, options);
}

Pushi.VERSION = "0.6.10";

Pushi.prototype.bind = Observable.prototype.bind;
Pushi.prototype.unbind = Observable.prototype.unbind;
Pushi.prototype.trigger = Observable.prototype.trigger;

Pushi.prototype.init = function (appKey, options, callback) {
    var existing = PUSHI_CONNECTIONS[appKey];
    if (existing) return this.clone(existing);
    this.config(appKey, options);
    this.socket = null;
    this.socketId = null;
    this.state = "disconnected";
    this.channels = {};
    this.events = {};
    this.auths = {};
    this._base = null;
    this._cloned = false;
    this.authEndpoint = this.options.authEndpoint;
    this.open(callback);
};

Pushi.prototype.config = function (appKey, options) {
    // `options` is required: reading a property of undefined throws, as in the original
    var timeout = options.timeout || 5000;
    var baseUrl = options.baseUrl || "wss://puxiapp.com/";
    var baseWebUrl = options.baseWebUrl || null;
    delete PUSHI_CONNECTIONS[this.appKey];
    this.timeout = timeout;
    this.url = baseUrl + appKey;
    this.baseUrl = baseUrl;
    this.baseWebUrl = baseWebUrl;
    this.appKey = appKey;
    this.options = options || {};
    PUSHI_CONNECTIONS[appKey] = this;
};

Pushi.prototype.reconfig = function (appKey, options, callback) {
    this.config(appKey, options);
    this.reopen(callback);
};

Pushi.prototype.clone = function (base) {
    this.timeout = base.timeout;
    this.url = base.url;
    this.baseUrl = base.baseUrl;
    this.baseWebUrl = base.baseWebUrl;
    this.appKey = base.appKey;
    this.options = base.options;
    this.socket = base.socket;
    this.socketId = base.socketId;
    this.state = base.state;
    this.channels = {};
    this.events = {};
    this.auths = base.auths;
    this.authEndpoint = base.authEndpoint;
    this._base = base;
    this._cloned = true;
    this.socket.subscriptions.push(this);
    if (this.state === "connected") this.onoconnect({ socket_id: this.socketId });
};

// Calls `fn` with `args` on every Pushi object sharing the socket.
Pushi.prototype.callobj = function (fn, objects) {
    var args = Array.prototype.slice.call(arguments, 2);
    for (var i = 0; i < objects.length; i++) fn.apply(objects[i], args);
};

Pushi.prototype.open = function (callback) {
    if (this.state !== "disconnected") return;
    var self = this;
    var subscriptions = this.socket ? this.socket.subscriptions : [this];
    var socket = new WebSocket(this.url);
    socket.subscriptions = subscriptions;
    socket._callback = callback;
    this.callobj(function () {
        this.socket = socket;
    }, subscriptions);

    socket.onopen = function () {
        if (this._callback) this._callback();
        this._callback = null;
    };
    socket.onmessage = function (event) {
        var json = JSON.parse(event.data);
        if (self.state === "disconnected" && json.event === "pusher:connection_established") {
            self.callobj(Pushi.prototype.onoconnect, this.subscriptions, JSON.parse(json.data));
        } else if (self.state === "connected") {
            self.callobj(Pushi.prototype.onmessage, this.subscriptions, json);
        }
        if (this._callback) this._callback();
        this._callback = null;
    };
    socket.onclose = function () {
        self.callobj(Pushi.prototype.onodisconnect, this.subscriptions);
        if (this._callback) this._callback();
        this._callback = null;
    };
};

Pushi.prototype.close = function (callback) {
    if (this.state !== "connected") return;
    this.socket._callback = callback;
    this.socket.close();
};

Pushi.prototype.reopen = function (callback) {
    var self = this;
    this.close(function () {
        self.open(callback);
    });
};

Pushi.prototype.retry = function () {
    if (this._cloned) return;
    var self = this;
    setTimeout(function () {
        self.open();
    }, this.timeout);
};

Pushi.prototype.onoconnect = function (data) {
    this.socketId = data.socket_id;
    this.state = "connected";
    this.trigger("connect");
};

Pushi.prototype.onodisconnect = function () {
    this.socketId = null;
    this.channels = {};
    this.state = "disconnected";
    this.trigger("disconnect");
    this.retry();
};

Pushi.prototype.onsubscribe = function (name, data) {
    var channel = this.channels[name];
    if (!channel) return;
    channel.setsubscribe(data);
    this.trigger("subscribe", name, data);
};

Pushi.prototype.onunsubscribe = function (name, data) {
    var channel = this.channels[name];
    if (!channel) return;
    delete this.channels[name];
    channel.setunsubscribe(data);
    this.trigger("unsubscribe", name, data);
};

Pushi.prototype.onlatest = function (name, data) {
    var channel = this.channels[name];
    if (!channel) return;
    channel.setlatest(data);
    this.trigger("latest", name, data);
};

Pushi.prototype.onmemberadded = function (name, member) {
    this.trigger("member_added", name, member);
};

Pushi.prototype.onmemberremoved = function (name, member) {
    this.trigger("member_removed", name, member);
};

Pushi.prototype.onmessage = function (json) {
    var name = json.channel;
    var channel = this.channels[name];
    // like the original: a frame without `channel` throws here (undefined.startsWith)
    var peer = name.startsWith("peer-");
    if (name && !channel && !peer) return;

    if (json.event === "pusher_internal:subscription_succeeded") {
        this.onsubscribe(name, JSON.parse(json.data));
    } else if (json.event === "pusher_internal:unsubscription_succeeded") {
        this.onunsubscribe(name, JSON.parse(json.data));
    } else if (json.event === "pusher_internal:latest") {
        this.onlatest(name, JSON.parse(json.data));
    } else if (json.event === "pusher:member_added") {
        this.onmemberadded(name, JSON.parse(json.member));
    } else if (json.event === "pusher:member_removed") {
        this.onmemberremoved(name, JSON.parse(json.member));
    }

    this.trigger(json.event, json.data, json.channel, json.mid, json.timestamp);
    if (channel) channel.setmessage(json.event, json.data, json.mid, json.timestamp);
};

Pushi.prototype.send = function (json) {
    this.socket.send(JSON.stringify(json));
};

Pushi.prototype.sendEvent = function (event, data, echo, persist) {
    this.send({
        event: event,
        data: data,
        echo: echo === undefined ? false : echo,
        persist: persist === undefined ? true : persist
    });
};

Pushi.prototype.sendChannel = function (event, data, channel, echo, persist) {
    this.send({
        event: event,
        data: data,
        channel: channel,
        echo: echo === undefined ? false : echo,
        persist: persist === undefined ? true : persist
    });
};

Pushi.prototype.invalidate = function (name) {
    if (name) delete this.channels[name];
    else this.channels = {};
};

Pushi.prototype.isValid = function (appKey, baseUrl) {
    return appKey === this.appKey && baseUrl === this.baseUrl;
};

Pushi.prototype.subscribe = function (name, force, callback) {
    var self = this;
    var existing = this.channels[name];
    if (existing && !force) return existing;
    if (this._cloned) {
        existing = this._base.channels[name];
        if (existing && !force) {
            setTimeout(function () {
                self.onsubscribe(name, existing.data);
            });
            this.channels[name] = existing;
            return existing;
        }
    }
    var authenticated =
        name.startsWith("private-") || name.startsWith("presence-") || name.startsWith("personal-");
    if (authenticated) this.subscribePrivate(name);
    else this.subscribePublic(name);
    var channel = new Channel(this, name);
    this.channels[name] = channel;
    if (callback) channel.bind("subscribe", callback, true);
    return channel;
};

Pushi.prototype.unsubscribe = function (name, callback) {
    var channel = this.channels[name];
    if (!channel) return;
    this.sendEvent("pusher:unsubscribe", { channel: name });
    if (callback) channel.bind("unsubscribe", callback, true);
    return channel;
};

Pushi.prototype.latest = function (name, skip, count, callback) {
    skip = skip || 0;
    count = count || 10;
    if (!this.channels[name] && !name.startsWith("peer-")) return;
    this.sendEvent("pusher:latest", { channel: name, skip: skip, count: count });
    var channel = this.ensureChannel(name);
    if (callback) channel.bind("latest", callback, true);
    return channel;
};

Pushi.prototype.ensureChannel = function (name) {
    if (!this.channels[name]) this.channels[name] = new Channel(this, name);
    return this.channels[name];
};

Pushi.prototype.subscribePublic = function (name) {
    this.sendEvent("pusher:subscribe", { channel: name });
};

Pushi.prototype.subscribePrivate = function (name) {
    if (!this.authEndpoint) throw "No auth endpoint defined";
    var self = this;
    var request = new XMLHttpRequest();
    // the channel name goes into the query string unencoded, as in the original
    request.open("get", this.authEndpoint + "?socket_id=" + this.socketId + "&channel=" + name, true);
    request.onreadystatechange = function () {
        if (request.readyState !== 4) return;
        var result = JSON.parse(request.responseText);
        if (!result.auth) return;
        self.sendEvent("pusher:subscribe", {
            channel: name,
            auth: result.auth,
            channel_data: result.channel_data
        });
    };
    request.send();
};

if (typeof module !== "undefined" && module.exports) {
    module.exports = { Pushi: Pushi, Channel: Channel, Observable: Observable };
}
