// Live vehicle updates over the owner's websocket (/ws/live/): SoC ring, status, range, age.
(function () {
  "use strict";
  const root = document.querySelector("[data-live-url]");
  if (!root || !("WebSocket" in window)) return;
  let delay = 1000;

  function statusText(update) {
    if (update.charging_state === "CHARGING") return "Charging";
    if (update.charging_state === "DISCHARGING") return "Sending energy to the grid";
    return update.plugged_in ? "Plugged in" : "Not plugged in";
  }

  function apply(update) {
    document.querySelectorAll('[data-vehicle="' + update.vehicle + '"]').forEach(function (card) {
      if (update.soc_pct !== null && update.soc_pct !== undefined) {
        const soc = Math.round(update.soc_pct);
        card.querySelectorAll('[data-field="soc"]').forEach(function (el) { el.textContent = soc + "%"; });
        card.querySelectorAll(".soc-ring-value").forEach(function (el) {
          el.setAttribute("stroke-dasharray", update.soc_pct.toFixed(1) + " 100");
        });
        card.querySelectorAll(".soc-ring").forEach(function (el) {
          el.setAttribute("aria-label", "Charge " + soc + " percent");
        });
      }
      card.querySelectorAll('[data-field="status"]').forEach(function (el) { el.textContent = statusText(update); });
      if (update.range_km) {
        card.querySelectorAll('[data-field="range"]').forEach(function (el) {
          el.textContent = Math.round(update.range_km) + " km";
        });
      }
      card.querySelectorAll('[data-field="age"]').forEach(function (el) {
        el.textContent = "just now";
        el.setAttribute("datetime", update.recorded_at);
      });
    });
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + root.dataset.liveUrl);
    socket.addEventListener("open", function () { delay = 1000; });
    socket.addEventListener("message", function (event) { apply(JSON.parse(event.data)); });
    socket.addEventListener("close", function (event) {
      if (event.code === 4401) return; // signed out: nothing to follow
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  }
  connect();
})();
