/* One video's page: player, probability plot with the threshold, the cut list
   with thumbnails, and the review (saved through the API). Names and every
   value from the server are set with textContent, never as HTML. */
"use strict";
(function () {
  const root = document.getElementById("video-page");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const player = $("player"), canvas = $("plot"), slider = $("threshold");
  const state = { data: null, fps: 25, frames: 1, scenes: [], saved: [], threshold: 0.5, dirty: false,
                  prob: new Map(), view: [0, 1] };
  window.videoPage = state;  // for the browser tests: what the page computed

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function clock(seconds) {
    const ms = Math.round(Math.max(0, seconds) * 1000);
    const h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60, s = Math.floor(ms / 1000) % 60;
    const pad = (v, n) => String(v).padStart(n, "0");
    return `${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}.${pad(ms % 1000, 3)}`;
  }
  function message(text, error) {
    const box = $("message");
    box.textContent = text;
    box.classList.toggle("error", !!error);
  }
  const sameList = (a, b) => a.length === b.length && a.every((s, i) => s[0] === b[i][0] && s[1] === b[i][1]);
  const cutFrames = (scenes) => scenes.slice(1).map((s) => s[0]);

  // -- the data --------------------------------------------------------------
  async function load() {
    const response = await fetch(root.dataset.api, { headers: { Accept: "application/json" } });
    const data = await response.json();
    performance.mark("video-data");  // for the benchmark: the data is in
    if (!response.ok) { message(data.error || "the video could not be loaded", true); return; }
    state.data = data;
    state.fps = data.rate.fps;
    state.frames = data.video.frame_count;
    for (const [f, p] of data.predictions.single_sparse) state.prob.set(f, p);
    const review = data.review && !data.review.broken ? data.review : null;
    state.saved = review ? review.scenes : data.step3_scenes.map((s) => [s.frame_in, s.frame_out]);
    state.scenes = state.saved.map((s) => s.slice());
    state.savedThreshold = review && review.threshold ? review.threshold : data.threshold;
    state.threshold = state.savedThreshold;
    slider.value = state.threshold;
    showReviewState();
    $("loading").hidden = true;
    render();
    performance.mark("video-rendered");  // plot, stats and the first rows drawn
  }

  function showReviewState() {
    const review = state.data.review, box = $("review-state");
    box.hidden = !review;
    $("drop-review").disabled = !review;
    $("export-source").textContent = review && !review.broken ? "(the reviewed list)" : "(STEP3's scenes)";
    if (!review) return;
    if (review.broken) { box.textContent = `The review cannot be used: ${review.broken}.`; return; }
    box.textContent = `Showing the review saved ${review.saved_at} (${review.scenes.length} scenes; STEP3 found ${state.data.scenes_step3}).`
      + (review.outdated ? ` It was ${review.outdated}.` : "");
    box.classList.toggle("error", !!review.outdated);
  }

  // -- what changed ------------------------------------------------------------
  function render() {
    $("threshold-value").textContent = Number(slider.value).toFixed(2);
    const cuts = cutFrames(state.scenes), before = new Set(cutFrames(state.saved));
    const now = new Set(cuts);
    const added = cuts.filter((f) => !before.has(f)).length;
    const removed = [...before].filter((f) => !now.has(f)).length;
    state.dirty = !sameList(state.scenes, state.saved);
    $("changes").textContent = state.dirty
      ? `Not saved: ${added} cut${added === 1 ? "" : "s"} added, ${removed} removed against the saved list.`
      : "The list shown is the saved one.";
    $("cut-count").textContent = `(${cuts.length})`;
    renderStats();
    renderCuts();
    renderTimeline();
    drawPlot();
  }

  function renderStats() {
    const lengths = state.scenes.map((s) => s[1] - s[0] + 1);
    const box = $("stats");
    box.textContent = "";
    const mean = lengths.reduce((a, b) => a + b, 0) / Math.max(1, lengths.length);
    const rows = [["Scenes", String(lengths.length)],
      ["Shortest", `${Math.min(...lengths)} frames (${(Math.min(...lengths) / state.fps).toFixed(2)} s)`],
      ["Longest", `${Math.max(...lengths)} frames (${(Math.max(...lengths) / state.fps).toFixed(2)} s)`],
      ["Mean", `${(mean / state.fps).toFixed(2)} s`],
      ["Video", `${state.frames} frames, ${state.fps.toFixed(3)} fps`]];
    for (const [k, v] of rows) { box.appendChild(el("dt", "", k)); box.appendChild(el("dd", "", v)); }
    box.querySelector("dd").id = "scene-count";
  }

  function cutProbability(prevOut, nextIn) {
    let best = 0;
    for (let f = prevOut - 1; f <= nextIn - 2; f++) best = Math.max(best, state.prob.get(f) || 0);
    return best;
  }

  function thumb(frame, label) {
    const figure = el("figure", "thumb");
    const img = el("img");
    img.loading = "lazy";
    img.width = 160;
    img.alt = `${label}: frame ${frame}`;
    const url = `${root.dataset.frame}?n=${frame}&w=160`;
    // Not ready yet (503 while ffmpeg makes it, or the queue is full): ask again.
    let tries = 0;
    img.addEventListener("error", () => {
      if (++tries <= 60) setTimeout(() => { img.src = `${url}&try=${tries}`; }, 1000 + 250 * Math.min(tries, 8));
    });
    img.src = url;
    figure.appendChild(img);
    figure.appendChild(el("figcaption", "muted", `${label} · ${frame}`));
    return figure;
  }

  // The first rows at once, the rest in slices between frames: a list of
  // 1,800 cuts (3,600 thumbnails) would otherwise hold the page for a second.
  const FIRST_ROWS = 60, SLICE_ROWS = 300;
  let renderToken = 0;

  function cutRow(i) {
    const scene = state.scenes[i + 1], prev = state.scenes[i];
    const short = Math.max(2, Math.round(state.fps / 2)), threshold = state.threshold;
    const p = cutProbability(prev[1], scene[0]);
    const item = el("li", "cut");
    item.dataset.frame = scene[0];
    item.appendChild(thumb(prev[1], "last before"));
    item.appendChild(thumb(scene[0], "first after"));
    const info = el("div", "cut-info");
    info.appendChild(el("div", "cut-title", `Cut ${i + 1} at frame ${scene[0]} · ${clock((scene[0] - 1) / state.fps)}`));
    info.appendChild(el("div", "muted", p > 0 ? `probability ${p.toFixed(3)}` : "probability below 0.02 (added by hand?)"));
    const flags = [];
    if (prev[1] - prev[0] + 1 < short || scene[1] - scene[0] + 1 < short) flags.push("very short shot");
    if (p > 0 && Math.abs(p - threshold) < 0.1) flags.push("close to the threshold");
    if (flags.length) info.appendChild(el("div", "flag", flags.join(" · ")));
    const go = el("button", "", "Go");
    go.type = "button";
    go.addEventListener("click", () => seek(scene[0]));
    const remove = el("button", "danger", "Remove");
    remove.type = "button";
    remove.dataset.action = "remove";
    remove.addEventListener("click", () => removeCut(i + 1));
    info.appendChild(go);
    info.appendChild(remove);
    item.appendChild(info);
    return item;
  }

  function renderCuts() {
    const list = $("cuts"), total = state.scenes.length - 1, token = ++renderToken;
    list.textContent = "";
    list.dataset.complete = "false";
    const add = (from, to) => {
      const fragment = document.createDocumentFragment();
      for (let i = from; i < to; i++) fragment.appendChild(cutRow(i));
      list.appendChild(fragment);
    };
    add(0, Math.min(FIRST_ROWS, total));
    const more = (from) => {
      if (token !== renderToken) return;  // a newer list replaced this one
      if (from >= total) { list.dataset.complete = "true"; return; }
      add(from, Math.min(from + SLICE_ROWS, total));
      setTimeout(() => more(from + SLICE_ROWS), 0);
    };
    more(Math.min(FIRST_ROWS, total));
  }

  function renderTimeline() {
    const bar = $("timeline");
    bar.textContent = "";
    for (const f of cutFrames(state.scenes)) {
      const tick = el("span", "tick");
      tick.style.left = `${(100 * (f - 1)) / state.frames}%`;
      bar.appendChild(tick);
    }
  }

  // -- the plot ----------------------------------------------------------------
  function drawPlot() {
    const data = state.data.predictions, ctx = canvas.getContext("2d");
    const width = canvas.width = canvas.clientWidth || 800, height = canvas.height;
    const [a, b] = state.view, factor = data.factor, n = data.single_frame.length;
    const x = (frame) => ((frame / state.frames - a) / (b - a)) * width;
    const y = (p) => height - 4 - p * (height - 8);
    ctx.clearRect(0, 0, width, height);
    for (const [series, color] of [[data.all_frames, "#f0a030"], [data.single_frame, "#2060c0"]]) {
      ctx.beginPath();
      ctx.strokeStyle = color;
      for (let i = 0; i < n; i++) {
        const px = x(i * factor);
        if (px < -2 || px > width + 2) continue;
        ctx.lineTo(px, y(series[i]));
      }
      ctx.stroke();
    }
    ctx.strokeStyle = "rgba(200,0,0,0.35)";
    for (const f of cutFrames(state.scenes)) { ctx.beginPath(); ctx.moveTo(x(f - 1), 0); ctx.lineTo(x(f - 1), height); ctx.stroke(); }
    ctx.strokeStyle = "#c00";
    ctx.setLineDash([6, 4]);
    ctx.beginPath(); ctx.moveTo(0, y(Number(slider.value))); ctx.lineTo(width, y(Number(slider.value))); ctx.stroke();
    ctx.setLineDash([]);
    const head = currentFrame();
    ctx.strokeStyle = "#000";
    ctx.beginPath(); ctx.moveTo(x(head - 1), 0); ctx.lineTo(x(head - 1), height); ctx.stroke();
  }

  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [a, b] = state.view, at = a + (event.offsetX / canvas.clientWidth) * (b - a);
    const span = Math.min(1, Math.max(200 / state.frames, (b - a) * (event.deltaY > 0 ? 1.5 : 1 / 1.5)));
    const start = Math.min(1 - span, Math.max(0, at - (at - a) * span / (b - a)));
    state.view = [start, start + span];
    drawPlot();
  }, { passive: false });
  canvas.addEventListener("click", (event) => {
    const [a, b] = state.view;
    seek(Math.round((a + (event.offsetX / canvas.clientWidth) * (b - a)) * state.frames) + 1);
  });

  // -- the player --------------------------------------------------------------
  function currentFrame() {
    return Math.min(state.frames, Math.floor(player.currentTime * state.fps + 1e-3) + 1);
  }
  function seek(frame) {
    player.currentTime = (Math.max(1, Math.min(frame, state.frames)) - 1 + 0.5) / state.fps;
  }
  function jump(direction) {
    const here = currentFrame(), cuts = cutFrames(state.scenes);
    const target = direction > 0 ? cuts.find((f) => f > here) : [...cuts].reverse().find((f) => f < here);
    if (target) seek(target);
  }
  player.addEventListener("timeupdate", () => {
    const f = currentFrame();
    $("playhead").textContent = `frame ${f} · ${clock((f - 1) / state.fps)}`;
    if (state.data) drawPlot();
  });
  $("timeline").addEventListener("click", (event) => {
    seek(Math.round((event.offsetX / event.currentTarget.clientWidth) * state.frames) + 1);
  });

  // -- edits -------------------------------------------------------------------
  function addCut(frame) {
    const i = state.scenes.findIndex((s) => s[0] <= frame && frame <= s[1]);
    if (i < 0) { message(`Frame ${frame} lies in a transition between two scenes: no cut added.`, true); return false; }
    const [first, last] = state.scenes[i];
    if (frame === first) { message(`Frame ${frame} already starts a scene.`, true); return false; }
    state.scenes.splice(i, 1, [first, frame - 1], [frame, last]);
    message(`Cut added at frame ${frame}.`);
    render();
    return true;
  }
  function removeCut(index) {
    const prev = state.scenes[index - 1], next = state.scenes[index];
    state.scenes.splice(index - 1, 2, [prev[0], next[1]]);
    message(`Cut at frame ${next[0]} removed.`);
    render();
  }
  state.addCut = addCut;
  state.removeCut = removeCut;

  slider.addEventListener("input", () => {
    state.threshold = Number(slider.value);
    state.scenes = window.SceneRule.scenesAt(state.data.predictions.single_sparse, state.threshold, state.frames);
    message("");
    render();
  });

  async function send(method, body) {
    const response = await fetch(root.dataset.review, {
      method, headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    return data;
  }
  $("save-review").addEventListener("click", async () => {
    try {
      // The threshold the list comes from (edits on top of it are in the scenes).
      const data = await send("PUT", { scenes: state.scenes, threshold: state.threshold });
      state.data.review = data.review;
      state.saved = data.review.scenes;
      state.savedThreshold = state.threshold;
      showReviewState();
      message(`Review saved: ${data.review.scenes.length} scenes. Exports now use it.`);
      render();
    } catch (err) { message(`Not saved: ${err.message}`, true); }
  });
  $("drop-review").addEventListener("click", async () => {
    try {
      await send("DELETE");
      state.data.review = null;
      state.saved = state.data.step3_scenes.map((s) => [s.frame_in, s.frame_out]);
      state.scenes = state.saved.map((s) => s.slice());
      slider.value = state.threshold = state.savedThreshold = state.data.threshold;
      showReviewState();
      message("Review dropped: STEP3's scenes are used again.");
      render();
    } catch (err) { message(`Not dropped: ${err.message}`, true); }
  });
  $("reset-list").addEventListener("click", () => {
    state.scenes = state.saved.map((s) => s.slice());
    slider.value = state.threshold = state.savedThreshold;
    message("");
    render();
  });
  $("add-cut").addEventListener("click", () => addCut(currentFrame()));
  $("prev-cut").addEventListener("click", () => jump(-1));
  $("next-cut").addEventListener("click", () => jump(1));
  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, textarea, select") && event.target !== slider) return;
    const key = event.key.toLowerCase();
    if (key === "n") jump(1);
    else if (key === "p") jump(-1);
    else if (key === "c") addCut(currentFrame());
    else if ((key === "arrowleft" || key === "arrowright") && player.paused && event.target !== slider) {
      seek(currentFrame() + (key === "arrowright" ? 1 : -1));
    } else return;
    event.preventDefault();
  });
  window.addEventListener("beforeunload", (event) => { if (state.dirty) event.preventDefault(); });
  window.addEventListener("resize", () => state.data && drawPlot());
  load().catch((err) => message(`The video could not be loaded: ${err.message}`, true));
})();
