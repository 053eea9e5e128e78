// ChargeScape shell script: registers the service worker (offline shell, web push), shows the
// "offline" badge while the network is down, and forgets the offline copies of pages on sign-out.
// Loaded with `defer` from /static/, so the strict CSP (script-src 'self') holds: no inline code.
(function () {
  "use strict";
  if ("serviceWorker" in navigator) {
    const url = document.body.dataset.swUrl;
    window.addEventListener("load", function () {
      navigator.serviceWorker.register(url, { scope: "/" }).catch(function (error) {
        console.warn("Service worker registration failed:", error);
      });
    });
  }

  // The badge is a real element (a status message screen readers announce), not CSS content.
  let badge = null;
  function updateOnlineBadge() {
    const offline = !navigator.onLine;
    document.documentElement.classList.toggle("is-offline", offline);
    if (offline && !badge) {
      badge = document.createElement("p");
      badge.className = "offline-badge";
      badge.setAttribute("role", "status");
      badge.innerHTML = '<span class="badge warn">Offline</span> <span>Showing what we last saw. ' +
        "Your car keeps charging to plan; changes need a connection.</span>";
      const main = document.getElementById("main");
      (main || document.body).prepend(badge);
    } else if (!offline && badge) {
      badge.remove();
      badge = null;
    }
  }
  window.addEventListener("online", updateOnlineBadge);
  window.addEventListener("offline", updateOnlineBadge);
  updateOnlineBadge();

  // Signing out: drop the service worker's copies of this owner's pages (templates/sw.js keeps
  // them for offline use); the static shell stays.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !/\/accounts\/logout\/$/.test(form.action)) return;
    if (!("caches" in window)) return;
    caches.keys().then(function (names) {
      names.forEach(function (name) {
        caches.open(name).then(function (cache) {
          cache.keys().then(function (requests) {
            requests.forEach(function (request) {
              const path = new URL(request.url).pathname;
              if (!path.startsWith("/static/") && path !== "/offline/") cache.delete(request);
            });
          });
        });
      });
    });
  });
})();
