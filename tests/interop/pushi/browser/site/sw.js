// The app's service worker for Web Push (what `registerServiceWorker("/sw.js")` installs):
// shows the push message as a notification, reading the fields Pushi's example worker reads
// (`title`, `body` or `message`, `tag`), and tells the pages it controls what it received and
// whether the browser accepted the notification (the test reads that back).
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

async function show(text) {
  let message = {};
  try {
    message = JSON.parse(text);
  } catch {
    message = { body: text };
  }
  if (typeof message !== "object" || message === null) message = { body: String(message) };
  let shown;
  try {
    await self.registration.showNotification(message.title || "Notification", {
      body: message.body || message.message || "",
      tag: message.tag,
    });
    shown = true;
  } catch (error) {
    shown = String(error);
  }
  for (const client of await self.clients.matchAll({ includeUncontrolled: true })) {
    client.postMessage({ push: text, title: message.title || "Notification", shown });
  }
}

self.addEventListener("push", (event) => {
  event.waitUntil(show(event.data ? event.data.text() : ""));
});
