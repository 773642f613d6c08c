// Dashboard page: keeps the cards live from the server's event stream.
// Text always goes in through textContent: names and log lines are never markup.
(() => {
  "use strict";

  const initial = JSON.parse(document.getElementById("initial-state").textContent);
  let clockOffset = initial.server_time - Date.now() / 1000;
  const steps = {};        // step id -> latest step state
  const baseTitle = document.title;
  const cards = document.querySelector(".cards");
  // Seconds after which a Cancel asks first, and after which a run's end is announced.
  const confirmAfter = Number(cards.dataset.confirmAfterS || 60);
  const notifyAfter = Number(cards.dataset.notifyAfterS || 60);
  const watched = {};      // step id -> id of the run seen running on this page

  const serverNow = () => Date.now() / 1000 + clockOffset;

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
  }

  function when(epoch) {
    if (!epoch) return "";
    const d = new Date(epoch * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  const setText = (el, text) => { if (el && el.textContent !== text) el.textContent = text; };
  const field = (root, name) => root.querySelector(`[data-field="${name}"]`);

  function fillList(ul, items) {
    ul.replaceChildren(...items.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
  }

  function timing(run) {
    // Elapsed and ETA from the server's clock, so that a reload shows the same timer.
    if (run.status !== "running") return { elapsed: run.elapsed_s, eta: null };
    const now = serverNow();
    const elapsed = now - run.started_at;
    let eta = null;
    if (run.eta_s !== null && run.eta_s !== undefined) {
      const measuredAt = run.started_at + run.elapsed_s;
      eta = Math.max(0, run.eta_s - (now - measuredAt));
    }
    return { elapsed, eta };
  }

  // Whether run snapshot a is at least as recent as b. A POST's answer can reach
  // the page after the event stream has already shown a later state of that run.
  function asRecent(a, b) {
    if (!b) return true;
    if (!a) return false;
    if (a.id !== b.id) return a.id > b.id;
    const va = a.version === null ? Infinity : a.version;
    const vb = b.version === null ? Infinity : b.version;
    return va >= vb;
  }

  // A run seen running here that has now ended: announce it if it was long.
  function noticeEnd(step) {
    const run = step.run;
    if (run && run.status === "running") { watched[step.id] = run.id; return; }
    if (!run || watched[step.id] !== run.id) return;
    delete watched[step.id];
    if (run.status !== "cancelled" && run.elapsed_s >= notifyAfter) window.RunNotice.ended(step.name, run, baseTitle);
  }

  function renderStep(step) {
    noticeEnd(step);
    steps[step.id] = step;
    const card = document.getElementById(`step-${step.id}`);
    if (!card) return;
    const run = step.run;
    const status = run ? run.status : "idle";
    card.dataset.status = status;
    const badge = field(card, "status");
    setText(badge, run && run.cancelling ? "cancelling" : status);
    badge.className = `badge status-${status}`;

    const problemsBox = field(card, "problems-box");
    problemsBox.hidden = step.problems.length === 0;
    fillList(field(card, "problems"), step.problems);
    field(card, "fix-box").hidden = !step.fix;
    setText(field(card, "fix"), step.fix || "");

    const bar = field(card, "bar");
    const percent = run && run.percent !== null && run.percent !== undefined ? run.percent : null;
    if (run && run.status === "running" && percent === null) {
      bar.removeAttribute("value");  // no total announced yet: the browser's "busy" bar
    } else {
      bar.value = percent === null ? 0 : percent;
    }
    setText(field(card, "percent"), percent === null ? "—" : `${percent.toFixed(1)} %`);

    let item = "—";
    if (run && run.item) {
      item = run.item;
      if (run.index && run.total) item += ` (${run.index}/${run.total})`;
      if (run.status === "running" && run.item_total) item += ` · ${run.item_done}/${run.item_total}`;
      if (run.status === "running" && run.in_progress > 1) item += ` · ${run.in_progress} items in progress`;
    }
    setText(field(card, "item"), item);
    setText(field(card, "counts"), run
      ? `${run.succeeded} succeeded · ${run.failed} failed · ${run.skipped} skipped` + (run.total !== null && run.total !== undefined ? ` of ${run.total}` : "")
      : "—");
    setText(field(card, "outcome"), run ? run.outcome : "not run on this projects folder yet");
    setText(field(card, "reason"), run ? rawResult(run) : "");
    const options = run ? run.options_summary : null;
    setText(field(card, "run-options"), options === null || options === undefined ? "—" : (options || "defaults"));
    const link = field(card, "run-link");
    link.hidden = !run;
    field(card, "no-run").hidden = !!run;
    if (run) {
      link.href = `/logs?run=${encodeURIComponent(run.id)}`;
      setText(link, `#${run.id} · log`);
      setText(field(card, "started"), `started ${when(run.started_at)}`);
    }
    const failures = run ? run.failures : [];
    field(card, "failures-box").hidden = failures.length === 0;
    fillList(field(card, "failures"), failures.map((f) => `${f.item}: ${f.detail}`));

    const lines = field(card, "lines");
    const text = run ? run.last_lines.join("\n") : "";
    if (lines.textContent !== text) {
      lines.textContent = text;
      lines.scrollTop = lines.scrollHeight;
    }
    const message = field(card, "message");
    if (!step.running && message.textContent === "Cancelling…") message.textContent = "";
    card.querySelector('[data-action="run"]').disabled = !step.ready || step.running || !!step.blocked;
    const again = card.querySelector('[data-action="again"]');
    again.hidden = !run;
    again.disabled = !run || !step.ready || step.running || !!step.blocked;
    again.title = run ? `run #${run.id} again, with its options (${options || "defaults"})` : "";
    card.querySelector('[data-action="cancel"]').disabled = !step.running || (run && run.cancelling);
    setText(field(card, "blocked"), step.running ? "" : (step.blocked || ""));
    renderTimes(step);
  }

  // The raw end of a run, under its sentence (as the pages' raw_result filter writes it).
  function rawResult(run) {
    let text = run.reason || "";
    if (run.return_code !== null && run.return_code !== undefined && !text.includes("exit code")) {
      text = text ? `${text} · return code ${run.return_code}` : `return code ${run.return_code}`;
    }
    return text;
  }

  function renderTimes(step) {
    const card = document.getElementById(`step-${step.id}`);
    const run = step.run;
    if (!card || !run) return;
    const t = timing(run);
    setText(field(card, "elapsed"), duration(t.elapsed));
    // No ETA while a run is being cancelled: the work will not go on.
    setText(field(card, "eta"), run.status === "running" && !run.cancelling ? duration(t.eta) : "—");
  }

  let latestSequence = null;
  function renderSequence(state) {
    latestSequence = state;
    const box = document.getElementById("sequence");
    const seq = state.current;
    let text;
    if (seq && seq.outcome) {
      text = `Run all #${seq.id}: ${seq.outcome}`;  // in words; the raw reason below it
    } else if (seq) {
      text = `Run all #${seq.id}: ${seq.status}`;
      if (seq.current_step) text += ` — now ${seq.current_step}`;
      if (seq.waiting) text += ` — ${seq.waiting}`;
    } else {
      text = `Run all: ${state.steps.join(" → ") || "no step takes part"}`;
    }
    setText(box, text);
    setText(document.getElementById("sequence-raw"), seq && seq.outcome ? (seq.reason || "") : "");
    const running = !!seq && seq.status === "running";
    document.getElementById("run-all").disabled = running || !!state.problem;
    document.getElementById("cancel-all").disabled = !running;
    setText(document.getElementById("run-all-blocked"), running ? "" : (state.problem || ""));
  }

  const sentence = (text) => {
    const t = text.trim();
    return t ? t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".") : t;
  };

  function renderProjects(snapshot) {
    // The projects folder is looked at each time: created while the page is open, it enables Run.
    const box = document.getElementById("projects-problem");
    box.hidden = !snapshot.projects_problem;
    setText(field(box, "problem"), snapshot.projects_problem ? sentence(snapshot.projects_problem) : "");
    field(box, "fix-box").hidden = !snapshot.projects_fix;
    setText(field(box, "fix"), snapshot.projects_fix || "");
    if (!snapshot.projects_problem) document.getElementById("videos-problem").hidden = true;
  }

  function renderSystem(sys) {
    const panel = document.getElementById("system");
    const load = sys.load_average ? ` · load ${sys.load_average.map((x) => x.toFixed(2)).join(" ")}` : "";
    setText(field(panel, "cpu"), `${sys.cpu_percent.toFixed(0)} % of ${sys.cpu_count} core${sys.cpu_count > 1 ? "s" : ""}${load}`);
    setText(field(panel, "memory"), `${bytes(sys.memory_used)} of ${bytes(sys.memory_total)} (${sys.memory_percent.toFixed(0)} %)`);
    setText(field(panel, "disk"), sys.disk ? `${bytes(sys.disk.free)} free of ${bytes(sys.disk.total)}` : "—");
    let gpu = "none found (no nvidia-smi)";
    if (sys.gpu_error) gpu = sys.gpu_error;
    else if (sys.gpus.length) {
      gpu = sys.gpus.map((g) => `${g.name}: ${g.utilization ?? "?"} % · ${g.memory_used_mib ?? "?"} / ${g.memory_total_mib ?? "?"} MiB`).join("; ");
    }
    setText(field(panel, "gpu"), gpu);
    renderRay(panel, sys.ray);
  }

  function renderRay(panel, ray) {
    // STEP3's Ray cluster, when one is configured (dashboard/system.py asks it now and then).
    field(panel, "ray-label").hidden = field(panel, "ray").hidden = !ray;
    if (!ray) return;
    let text = `${ray.address}: asking…`;
    if (ray.error) text = ray.error;
    else if (ray.nodes) {
      const alive = ray.nodes.filter((n) => n.alive);
      const sum = (key) => alive.reduce((total, n) => total + n[key], 0);
      const types = [...new Set(alive.flatMap((n) => n.gpu_types))].join(", ");
      text = `${alive.length} node${alive.length === 1 ? "" : "s"} · ${sum("cpus")} CPUs · ${sum("gpus")} GPUs` +
        `${types ? ` (${types})` : ""} at ${ray.address}`;
    }
    setText(field(panel, "ray"), text);
  }

  function renderTitle() {
    if (window.RunNotice.title()) { document.title = window.RunNotice.title(); return; }
    const running = Object.values(steps).filter((s) => s.run && s.run.status === "running");
    if (!running.length) { document.title = baseTitle; return; }
    const s = running[0];
    const pct = s.run.percent === null ? "…" : `${Math.floor(s.run.percent)} %`;
    document.title = `${pct} ${s.name} · ${baseTitle}`;
  }

  function renderAll(snapshot) {
    clockOffset = snapshot.server_time - Date.now() / 1000;
    snapshot.steps.forEach(renderStep);
    renderSequence(snapshot.sequence);
    renderProjects(snapshot);
    renderTitle();
  }

  function showMessage(el, text, ok) {
    el.textContent = text;
    el.classList.toggle("ok", !!ok);
    // Confirmations fade; errors stay until the next action.
    clearTimeout(el.clearTimer);
    if (ok) el.clearTimer = setTimeout(() => { el.textContent = ""; }, 6000);
  }

  async function post(url, payload) {
    let response;
    const headers = { Accept: "application/json" };
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    try {
      response = await fetch(url, { method: "POST", headers, body: payload === undefined ? undefined : JSON.stringify(payload) });
    } catch (err) {
      return { ok: false, body: { error: `the dashboard did not answer (${err.message})` } };
    }
    let body = {};
    try { body = await response.json(); } catch (_) { /* an empty or non-JSON answer */ }
    return { ok: response.ok, status: response.status, body };
  }

  // A run going for longer than confirmAfter is cancelled only once the user says so.
  function confirmCancel(name, startedAt) {
    const elapsed = serverNow() - startedAt;
    if (!(elapsed > confirmAfter)) return true;
    return window.confirm(`${name} has been running for ${duration(elapsed)}. Cancel it? ` +
                          "The video it is working on is left unfinished; finished videos keep their results.");
  }

  // What a card's button posts: [url, body], or null when there is nothing to post.
  function request(action, stepId, card) {
    const step = steps[stepId];
    const base = `/api/steps/${encodeURIComponent(stepId)}`;
    if (action === "run") return [`${base}/run`, window.RunOptions.has(stepId) ? { options: window.RunOptions.read(card) } : undefined];
    if (action === "again") return step && step.run ? [`/api/runs/${encodeURIComponent(step.run.id)}/again`, undefined] : null;
    if (action === "cancel") {
      const run = step && step.run;
      return !run || confirmCancel(step.name, run.started_at) ? [`${base}/cancel`, undefined] : null;
    }
    return null;
  }

  cards.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const card = button.closest(".card");
    const stepId = card.dataset.step;
    const message = field(card, "message");
    const action = button.dataset.action;
    if (action === "defaults") { window.RunOptions.reset(card); return; }
    const call = request(action, stepId, card);
    if (!call) return;
    button.disabled = true;
    const result = await post(...call);
    if (result.ok) {
      showMessage(message, action === "cancel" ? "Cancelling…" : `Started run #${result.body.run_id}.`, true);
      const known = steps[stepId];
      if (result.body.run && known && asRecent(result.body.run, known.run)) {
        renderStep({ ...known, run: result.body.run, running: result.body.run.status === "running" });
      }
    } else {
      let text = result.body.error || `error ${result.status}`;
      if (result.body.fix) text += ` — run: ${result.body.fix}`;
      showMessage(message, text, false);
      if (steps[stepId]) renderStep(steps[stepId]);
    }
  });

  const toolbarMessage = document.getElementById("toolbar-message");
  document.getElementById("run-all").addEventListener("click", async () => {
    const result = await post("/api/run-all");
    showMessage(toolbarMessage, result.ok ? "Run all started." : (result.body.error || `error ${result.status}`), result.ok);
  });
  document.getElementById("cancel-all").addEventListener("click", async () => {
    const seq = latestSequence && latestSequence.current;
    if (seq && !confirmCancel("Run all", seq.started_at)) return;
    const result = await post("/api/run-all/cancel");
    showMessage(toolbarMessage, result.ok ? "Cancelling run all…" : (result.body.error || `error ${result.status}`), result.ok);
  });

  const connection = document.getElementById("connection");
  // The browser retries a dropped stream by itself, but gives up for good after
  // an answer that is not 200 (a 503 when the server's stream slots are full, a
  // restart): then this retries, with a growing delay, until the stream is back.
  let retryDelay = 1000;
  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("open", () => { connection.hidden = true; retryDelay = 1000; });
    source.addEventListener("error", () => {
      connection.hidden = false;
      if (source.readyState !== EventSource.CLOSED) {
        connection.textContent = "Connection lost: reconnecting…";
        return;
      }
      const delay = retryDelay * (0.75 + Math.random() / 2);
      connection.textContent = `Connection lost: trying again in ${Math.ceil(delay / 1000)} s…`;
      retryDelay = Math.min(retryDelay * 2, 15000);
      setTimeout(connect, delay);
    });
    source.addEventListener("snapshot", (e) => renderAll(JSON.parse(e.data)));
    source.addEventListener("step", (e) => { renderStep(JSON.parse(e.data)); renderTitle(); });
    source.addEventListener("sequence", (e) => renderSequence(JSON.parse(e.data)));
    source.addEventListener("system", (e) => renderSystem(JSON.parse(e.data)));
  }

  window.addEventListener("run-notice-seen", renderTitle);
  renderAll(initial);
  setInterval(() => { Object.values(steps).forEach(renderTimes); }, 1000);
  connect();
})();
