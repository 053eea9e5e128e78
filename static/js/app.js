// ChargeScape shell script: registers the service worker (offline shell, later web push).
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
  function updateOnlineBadge() {
    document.documentElement.classList.toggle("is-offline", !navigator.onLine);
  }
  window.addEventListener("online", updateOnlineBadge);
  window.addEventListener("offline", updateOnlineBadge);
  updateOnlineBadge();
})();
