// Page-side test aid, loaded after pushi.js. It only listens through pushi.js' own public
// `bind` API and hands plain copies of what it saw back to the test (Playwright can only move
// JSON-like values out of the page). Nothing here changes how pushi.js behaves.
(function () {
  "use strict";

  /** A JSON copy (undefined becomes null, as in a JSON array). */
  function copy(value) {
    return value === undefined ? null : JSON.parse(JSON.stringify(value));
  }

  var rec = {
    copy: copy,
    /** label -> list of listener argument lists (event name first, as pushi.js passes them). */
    logs: {},

    /** Binds `events` on a Pushi or Channel object and records every call under `label`. */
    collect: function (target, label) {
      var list = rec.logs[label] || (rec.logs[label] = []);
      for (var i = 2; i < arguments.length; i++) {
        target.bind(arguments[i], function () {
          list.push(copy(Array.prototype.slice.call(arguments)));
        });
      }
      return list;
    },

    /** Resolves with the listener arguments the next time `event` fires on `target`. */
    once: function (target, event, ms) {
      return new Promise(function (resolve, reject) {
        var listener = function () {
          clearTimeout(timer);
          resolve(copy(Array.prototype.slice.call(arguments)));
        };
        var timer = setTimeout(function () {
          target.unbind(event, listener);
          reject(new Error('timed out waiting for "' + event + '"'));
        }, ms || 5000);
        target.bind(event, listener, true);
      });
    },

    /** Calls `fn(callback)` and resolves with the callback's arguments. */
    callback: function (fn, ms) {
      return new Promise(function (resolve, reject) {
        var timer = setTimeout(function () {
          reject(new Error("timed out waiting for the callback"));
        }, ms || 5000);
        fn(function () {
          clearTimeout(timer);
          resolve(copy(Array.prototype.slice.call(arguments)));
        });
      });
    },
  };

  // what the app's service worker reports (see sw.js), under the label "sw"
  if (navigator.serviceWorker) {
    navigator.serviceWorker.addEventListener("message", function (event) {
      (rec.logs.sw || (rec.logs.sw = [])).push(copy(event.data));
    });
  }

  window.rec = rec;
})();
