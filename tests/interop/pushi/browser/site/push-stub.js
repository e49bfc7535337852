// Stands in for the browser's push service registration, and for nothing else.
//
// Chromium's PushManager.subscribe() registers with the browser vendor's push service (Firebase
// Cloud Messaging for Chromium); this machine's network reaches no such service, and the call
// then never settles. So only `PushManager.prototype.subscribe` / `getSubscription` are
// replaced here, returning a PushSubscription-shaped object whose endpoint is the test's own
// push service and whose keys the test holds. Everything else pushi.js touches is the real
// browser: Notification permission, service worker registration, XMLHttpRequest with
// credentials, cookies, CORS. The `calls` list records what pushi.js asked the push manager.
(function () {
  "use strict";

  function fromBase64Url(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) base64 += "=";
    var raw = atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64Url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  window.installPushStub = function (keys) {
    var state = { calls: [], subscription: null, unsubscribed: 0 };

    function makeSubscription(options) {
      var subscription = {
        endpoint: keys.endpoint,
        expirationTime: null,
        options: options,
        getKey: function (name) {
          return fromBase64Url(keys[name]);
        },
        toJSON: function () {
          return {
            endpoint: keys.endpoint,
            expirationTime: null,
            keys: { p256dh: keys.p256dh, auth: keys.auth },
          };
        },
        unsubscribe: function () {
          state.unsubscribed += 1;
          if (state.subscription === subscription) state.subscription = null;
          return Promise.resolve(true);
        },
      };
      return subscription;
    }

    PushManager.prototype.subscribe = function (options) {
      var key = options && options.applicationServerKey;
      state.calls.push({
        method: "subscribe",
        userVisibleOnly: options && options.userVisibleOnly,
        applicationServerKey: key ? toBase64Url(key.buffer || key) : null,
      });
      state.subscription = state.subscription || makeSubscription(options);
      return Promise.resolve(state.subscription);
    };
    PushManager.prototype.getSubscription = function () {
      state.calls.push({ method: "getSubscription" });
      return Promise.resolve(state.subscription);
    };
    window.pushStub = state;
  };
})();
