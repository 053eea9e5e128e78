// Account page: turn web push on or off for this device. Subscribes through the service worker
// with the server's VAPID public key and hands the subscription to the server (JSON + CSRF).
// iPhone and iPad only offer push to apps added to the home screen: we say how.
(function () {
  "use strict";
  const box = document.querySelector("[data-push]");
  if (!box) return;
  const status = box.querySelector("[data-push-status]");
  const on = box.querySelector("[data-push-subscribe]");
  const off = box.querySelector("[data-push-unsubscribe]");
  const hint = box.querySelector("[data-ios-hint]");
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]");

  const ios = /iPad|iPhone|iPod/.test(navigator.userAgent) ||
    (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);
  const standalone = window.navigator.standalone === true ||
    window.matchMedia("(display-mode: standalone)").matches;

  function say(text) { status.textContent = text; }

  function keyBytes(base64url) {
    const padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(padded);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf ? csrf.value : "" },
      body: JSON.stringify(body),
    }).then(function (response) {
      if (!response.ok) throw new Error("The server said " + response.status);
      return response;
    });
  }

  function show(subscription) {
    on.hidden = Boolean(subscription);
    off.hidden = !subscription;
    say(subscription
      ? "Push notifications are on for this device."
      : Notification.permission === "denied"
        ? "Notifications are blocked for this site. Allow them in your browser's site settings, then try again."
        : "Push notifications are off for this device.");
  }

  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    if (ios && !standalone) {
      say("To get push notifications on this device, add ChargeScape to your home screen first.");
      hint.hidden = false;
    } else {
      say("This browser can't receive push notifications. You'll still see everything under the bell, and by email if you choose.");
    }
    return;
  }
  if (ios && !standalone) hint.hidden = false;

  navigator.serviceWorker.ready
    .then(function (registration) { return registration.pushManager.getSubscription(); })
    .then(function (subscription) {
      show(subscription);
      // Re-send it (idempotent): the service worker may have renewed it since we last heard.
      if (subscription) post(box.dataset.subscribeUrl, subscription.toJSON()).catch(function () {});
    })
    .catch(function () { say("Couldn't check push notifications on this device."); });

  on.addEventListener("click", function () {
    on.disabled = true;
    say("Asking your browser…");
    Notification.requestPermission()
      .then(function (permission) {
        if (permission !== "granted") throw new Error("permission");
        return navigator.serviceWorker.ready;
      })
      .then(function (registration) {
        return registration.pushManager.subscribe({
          userVisibleOnly: true,
          applicationServerKey: keyBytes(box.dataset.vapidKey),
        });
      })
      .then(function (subscription) {
        return post(box.dataset.subscribeUrl, subscription.toJSON()).then(function () { return subscription; });
      })
      .then(show)
      .catch(function (error) {
        show(null);
        if (error.message !== "permission") say("Couldn't turn on push: " + error.message);
      })
      .finally(function () { on.disabled = false; });
  });

  off.addEventListener("click", function () {
    off.disabled = true;
    navigator.serviceWorker.ready
      .then(function (registration) { return registration.pushManager.getSubscription(); })
      .then(function (subscription) {
        if (!subscription) return null;
        return post(box.dataset.unsubscribeUrl, { endpoint: subscription.endpoint })
          .then(function () { return subscription.unsubscribe(); });
      })
      .then(function () { show(null); })
      .catch(function (error) { say("Couldn't turn off push: " + error.message); })
      .finally(function () { off.disabled = false; });
  });
})();
