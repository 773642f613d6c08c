// History page: "Run again" repeats a run with the options it recorded; while a run in
// the table is still running, the table refreshes every few seconds.
(() => {
  "use strict";

  const table = document.getElementById("runs");
  if (table) {
    table.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-again]");
      if (!button) return;
      const message = button.parentElement.querySelector(".message");
      button.disabled = true;
      let response, body = {};
      try {
        response = await fetch(`/api/runs/${encodeURIComponent(button.dataset.again)}/again`,
                               { method: "POST", headers: { Accept: "application/json" } });
        try { body = await response.json(); } catch (_) { /* an empty or non-JSON answer */ }
      } catch (err) {
        body = { error: `the dashboard did not answer (${err.message})` };
      }
      button.disabled = false;
      message.classList.toggle("ok", !!(response && response.ok));
      if (response && response.ok) {
        message.textContent = ` Started run #${body.run_id}. `;
        const link = document.createElement("a");
        link.href = "/";
        link.textContent = "Follow it on the dashboard";
        message.append(link);
      } else {
        message.textContent = ` ${body.error || `error ${response ? response.status : ""}`}`;
      }
    });
  }

  if (!document.querySelector("#runs .status-running")) return;
  setInterval(() => { if (!document.hidden) window.location.reload(); }, 5000);
})();
