// ChargeScape service worker: caches the app shell so the app opens without a network,
// shows the offline page for navigations that fail, and shows web push notifications.
// Served from / so its scope is the app.
const CACHE = "chargescape-shell-v2";
const SHELL = [{% for url in shell %}"{{ url|escapejs }}"{% if not forloop.last %}, {% endif %}{% endfor %}];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((key) => key !== CACHE).map((key) => caches.delete(key))))
      .then(() => self.clients.claim())
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  if (request.mode === "navigate") {
    event.respondWith(networkThenCopy(request).catch(() => caches.match("/offline/")));
    return;
  }
  if (isFragment(request)) {  // htmx fragments (the charging plan): see "Offline copies" below
    event.respondWith(networkThenCopy(request));
    return;
  }
  if (new URL(request.url).pathname.startsWith("/static/")) {
    event.respondWith(caches.match(request).then((hit) => hit || fetch(request).then(keepCopy(request))));
  }
});

// Web push (accounts.notifications.push): the payload is JSON {id, title, body, url, tag, urgent}.
self.addEventListener("push", (event) => {
  let note = {};
  try {
    note = event.data ? event.data.json() : {};
  } catch (error) {
    note = { title: "ChargeScape", body: event.data ? event.data.text() : "" };
  }
  const url = note.kind === "digest" || !note.id ? (note.url || "/account/notifications/")
    : "/account/notifications/" + note.id + "/"; // marks it read, then opens its page
  event.waitUntil(
    self.registration.showNotification(note.title || "ChargeScape", {
      body: note.body || "",
      tag: note.tag || undefined,
      renotify: Boolean(note.tag),
      requireInteraction: Boolean(note.urgent),
      icon: "/static/icons/icon-192.png",
      badge: "/static/icons/icon-192.png",
      data: { url: url },
    })
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL((event.notification.data && event.notification.data.url) || "/", self.location.origin);
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      for (const client of windows) {
        if (new URL(client.url).origin === target.origin && "navigate" in client) {
          return client.focus().then(() => client.navigate(target.href));
        }
      }
      return self.clients.openWindow(target.href);
    })
  );
});

// The push service replaced our subscription: subscribe again with the server's key. The server
// learns the new endpoint the next time the Account page opens (static/js/push.js re-sends it; a
// service worker has no CSRF token to post it itself), and drops the old one on its first 410.
self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil(
    fetch("/account/push/key/", { credentials: "same-origin" })
      .then((response) => response.json())
      .then((data) => {
        const padded = (data.key + "===".slice((data.key.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
        const key = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
        return self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
      })
  );
});

// --- Offline copies (issue 12: the app opens offline with the last-known vehicle state) --------
// Pages and htmx fragments go to the network first and keep their last good copy; offline, that
// copy is served (static/js/app.js then shows the "offline" badge). Static files fetched after
// install are kept too, so a page copy has its scripts and styles. Signing out deletes the page
// copies (app.js). Redirected or failed responses are never kept: a navigation cannot be answered
// with a redirect, and an error page is not "last known".
function isFragment(request) {
  return request.headers.get("HX-Request") === "true" && new URL(request.url).origin === self.location.origin;
}

function keepCopy(request) {
  return (response) => {
    if (response.ok && !response.redirected && response.type === "basic") {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(request, copy));
    }
    return response;
  };
}

function networkThenCopy(request) {
  return fetch(request)
    .then(keepCopy(request))
    .catch((error) =>
      // Django varies pages on Cookie; the copy is this browser's own, so the match ignores Vary.
      caches.match(request, { ignoreVary: true }).then((hit) => {
        if (hit) return hit;
        throw error;
      })
    );
}
