// Live updates over the owner's websocket (/ws/live/): vehicle state (SoC ring, status, range,
// age) and notifications (bell count, a toast, the centre's list). Every notification is stored
// before it is sent, so on every (re)connect the page sends the id of the newest one it has seen
// and the server replays what it missed. Loaded on every signed-in page (base.html); pages that
// also include it get one socket, not two.
(function () {
  "use strict";
  if (window.chargescapeLive) return;
  window.chargescapeLive = true;
  const root = document.querySelector("[data-live-url]");
  if (!root || !("WebSocket" in window)) return;
  const bell = document.querySelector("[data-notifications]");
  let lastId = bell ? parseInt(bell.dataset.lastId || "0", 10) || 0 : 0;
  let delay = 1000;

  function statusText(update) {
    // A managed charger's readings carry the power (update.power_kw, negative when sending).
    const power = typeof update.power_kw === "number" && Math.abs(update.power_kw) >= 0.1
      ? " · " + Math.abs(update.power_kw).toFixed(1) + " kW" : "";
    if (update.charging_state === "CHARGING") return "Charging" + power;
    if (update.charging_state === "DISCHARGING") return "Sending energy to the grid" + power;
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

  function setUnread(count) {
    if (!bell) return;
    const badge = bell.querySelector("[data-unread]");
    if (badge) {
      badge.textContent = String(count);
      badge.hidden = count < 1;
    }
    bell.setAttribute("aria-label", count > 0 ? "Notifications, " + count + " unread" : "Notifications");
  }

  function openUrl(note) {
    return "/account/notifications/" + note.id + "/";
  }

  function toast(note) {
    const region = document.querySelector("[data-toasts]");
    if (!region) return;
    const link = document.createElement("a");
    link.className = "toast" + (note.urgent ? " urgent" : "");
    link.href = openUrl(note);
    const title = document.createElement("strong");
    title.textContent = note.title;
    const body = document.createElement("span");
    body.textContent = note.body;
    link.append(title, body);
    region.append(link);
    setTimeout(function () { link.remove(); }, note.urgent ? 15000 : 7000);
  }

  function addToList(note) {
    const list = document.querySelector("[data-notification-list]");
    if (!list || list.querySelector('[data-notification-id="' + note.id + '"]')) return;
    const item = document.createElement("li");
    item.className = "notification unread" + (note.urgent ? " urgent" : "");
    item.dataset.notificationId = String(note.id);
    const link = document.createElement("a");
    link.className = "notification-link";
    link.href = openUrl(note);
    const title = document.createElement("strong");
    title.className = "notification-title";
    title.textContent = note.title;
    const body = document.createElement("span");
    body.className = "notification-body";
    body.textContent = note.body;
    link.append(title, body);
    item.append(link);
    list.prepend(item);
  }

  function notify(message) {
    const note = message.notification;
    if (note.id <= lastId) return; // already shown (a replay overlapping a live message)
    lastId = note.id;
    if (bell) bell.dataset.lastId = String(lastId);
    setUnread(message.unread);
    addToList(note);
    if (!message.replay || note.urgent) toast(note);
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + root.dataset.liveUrl);
    socket.addEventListener("open", function () {
      delay = 1000;
      if (bell) socket.send(JSON.stringify({ notifications_after: lastId }));
    });
    socket.addEventListener("message", function (event) {
      const message = JSON.parse(event.data);
      if (message.notification) notify(message);
      else if (message.vehicle) apply(message);
    });
    socket.addEventListener("close", function (event) {
      if (event.code === 4401) return; // signed out: nothing to follow
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  }
  connect();
})();
