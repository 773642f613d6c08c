// When a long run ends: the page title says so until the tab is looked at again, and the
// browser shows a notification if the user turned "Notify me when runs end" on (the
// permission is asked only then, from that click; never when the page loads).
window.RunNotice = (() => {
  "use strict";

  const KEY = "dashboard.notify";
  const toggle = document.getElementById("notify");
  const supported = "Notification" in window;
  let endedTitle = null;   // "✓ STEP3 done — Dashboard · Video workflow", until looked at

  const enabled = () => supported && Notification.permission === "granted" && localStorage.getItem(KEY) === "1";
  toggle.checked = enabled();

  toggle.addEventListener("change", async () => {
    if (!toggle.checked) { localStorage.removeItem(KEY); return; }
    if (!supported) {
      toggle.checked = false;
      toggle.parentElement.title = "This browser cannot show notifications; the page title still changes.";
      return;
    }
    const answer = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
    toggle.checked = answer === "granted";
    if (toggle.checked) localStorage.setItem(KEY, "1");
    else toggle.parentElement.title = "Notifications are blocked for this page in the browser's settings; the page title still changes.";
  });

  // The title stays until the user comes back to the tab (or acts on the page).
  const seen = () => { endedTitle = null; window.dispatchEvent(new Event("run-notice-seen")); };
  window.addEventListener("focus", seen);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) seen(); });
  document.addEventListener("pointerdown", seen);
  document.addEventListener("keydown", seen);

  function ended(stepName, run, baseTitle) {
    const ok = run.status === "succeeded";
    endedTitle = `${ok ? "✓" : "✗"} ${stepName} ${ok ? "done" : run.status} — ${baseTitle}`;
    if (enabled()) {
      try {
        new Notification(`${stepName} ${ok ? "done" : run.status}`, { body: run.outcome, tag: `run-${run.id}` });
      } catch (_) { /* a browser that only notifies from a service worker: the title is enough */ }
    }
  }

  return { ended, title: () => endedTitle };
})();
