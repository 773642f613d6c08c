// Log viewer: follows the file shown (polling what was written after the last
// offset), and re-submits the form when a choice changes.
(() => {
  "use strict";

  const form = document.getElementById("log-form");
  const stepSelect = document.getElementById("log-step");
  const log = document.getElementById("log");
  const follow = document.getElementById("log-follow");
  const MAX_LINES = 20000;
  const POLL_MS = 700;

  stepSelect.addEventListener("change", () => {
    // A new source: its own latest run or file, not the one chosen before.
    for (const id of ["log-run", "log-path"]) {
      const el = document.getElementById(id);
      if (el) el.disabled = true;
    }
    form.submit();
  });
  for (const id of ["log-run", "log-path", "log-level"]) {
    const el = document.getElementById(id);
    if (el) el.addEventListener("change", () => form.submit());
  }

  if (!log) return;
  const params = new URLSearchParams();
  if (log.dataset.run) params.set("run", log.dataset.run);
  else params.set("path", log.dataset.path);
  const filter = document.getElementById("log-filter").value;
  const level = document.getElementById("log-level").value;
  if (filter) params.set("filter", filter);
  if (level) params.set("level", level);
  params.set("tail", document.getElementById("log-tail").value || "200");
  let end = Number(log.dataset.end);
  let busy = false;

  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.scrollTop = log.scrollHeight;

  const empty = document.getElementById("log-empty");

  function append(lines, replace) {
    if (lines.length) {
      // The first matching line replaces the "no matching lines" note.
      empty.hidden = true;
      log.hidden = false;
    }
    const stick = atBottom();
    const fragment = document.createDocumentFragment();
    for (const line of lines) {
      const span = document.createElement("span");
      span.className = `lvl-${line.level}`;
      span.textContent = line.text;
      fragment.append(span, "\n");
    }
    if (replace) log.replaceChildren(fragment);
    else log.append(fragment);
    // Two nodes per line (the span and its newline).
    while (log.childNodes.length > 2 * MAX_LINES) {
      log.firstChild.remove();
      log.firstChild.remove();
    }
    if (stick || replace) log.scrollTop = log.scrollHeight;
  }

  async function poll() {
    if (busy || !follow.checked || document.hidden) return;
    busy = true;
    try {
      params.set("after", String(end));
      const response = await fetch(`/api/logs/file?${params}`, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const data = await response.json();
        if (data.lines.length || data.reset) append(data.lines, data.reset);
        end = data.end;
      }
    } catch (_) {
      // The server may be restarting: the next poll tries again.
    } finally {
      busy = false;
    }
  }
  setInterval(poll, POLL_MS);
})();
