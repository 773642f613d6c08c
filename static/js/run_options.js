// A card's run options (templates/_options.html): the values the form holds, in the types
// the API takes, and which of them differ from the step's declared defaults.
// The server checks every value again (dashboard/options.py); this only reads the form.
window.RunOptions = (() => {
  "use strict";

  const declarations = JSON.parse(document.getElementById("step-options").textContent);

  function asNumber(text, whole, auto) {
    const t = text.trim();
    if (auto && t.toLowerCase() === "auto") return "auto";
    if (t === "" || !isFinite(Number(t))) return t;  // sent as it is: the answer names the option
    const n = Number(t);
    return whole && /^-?\d+$/.test(t) ? parseInt(t, 10) : n;
  }

  function readOne(box, option) {
    switch (option.type) {
      case "boolean": return box.querySelector('input[type="checkbox"]').checked;
      case "choice": return box.querySelector("select").value;
      case "videos": {
        const which = box.querySelector('input[type="radio"]:checked');
        if (!which || which.value === "all") return null;
        return [...box.querySelectorAll('.video-choice input[type="checkbox"]:checked')].map((i) => i.value);
      }
      default: return asNumber(box.querySelector("input").value, option.type === "integer", option.auto);
    }
  }

  function writeOne(box, option, value) {
    switch (option.type) {
      case "boolean": box.querySelector('input[type="checkbox"]').checked = !!value; break;
      case "choice": box.querySelector("select").value = value; break;
      case "videos": {
        const chosen = new Set(value || []);
        box.querySelectorAll('input[type="radio"]').forEach((r) => { r.checked = (r.value === "all") === (value === null); });
        box.querySelectorAll('.video-choice input[type="checkbox"]').forEach((c) => { c.checked = chosen.has(c.value); });
        break;
      }
      default: box.querySelector("input").value = String(value);
    }
  }

  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

  // The card's values, one per declared option; {} for a step without options.
  function read(card) {
    const values = {};
    for (const option of declarations[card.dataset.step] || []) {
      const box = card.querySelector(`.option[data-option="${option.name}"]`);
      if (box) values[option.name] = readOne(box, option);
    }
    return values;
  }

  function reset(card) {
    for (const option of declarations[card.dataset.step] || []) {
      const box = card.querySelector(`.option[data-option="${option.name}"]`);
      if (box) writeOne(box, option, option.default);
    }
    showChanged(card);
  }

  // "Threshold 0.3 · Force re-run", as dashboard/options.py's summary() says it.
  function describe(stepId, values) {
    const parts = [];
    for (const option of declarations[stepId] || []) {
      if (!(option.name in values) || same(values[option.name], option.default)) continue;
      const value = values[option.name];
      if (value === true) parts.push(option.label);
      else if (value === false) parts.push(`${option.label}: off`);
      else if (Array.isArray(value)) {
        const more = value.length > 3 ? ` and ${value.length - 3} more` : "";
        parts.push(`${option.label}: ${value.slice(0, 3).join(", ")}${more}`);
      } else if (value === null) parts.push(`${option.label}: all`);
      else parts.push(`${option.label} ${value}`);
    }
    return parts.join(" · ");
  }

  function showChanged(card) {
    const label = card.querySelector('[data-field="options-changed"]');
    if (!label) return;
    const text = describe(card.dataset.step, read(card));
    label.textContent = text ? `— changed: ${text}` : "(defaults)";
    card.querySelector('[data-field="options-box"]').classList.toggle("changed", !!text);
  }

  // The summary follows the form; "Back to the defaults" resets it.
  document.querySelectorAll(".card").forEach((card) => {
    const box = card.querySelector('[data-field="options-box"]');
    if (!box) return;
    box.addEventListener("input", () => showChanged(card));
    box.addEventListener("change", (event) => {
      // Ticking a video means "only these".
      if (event.target.closest(".video-choice") && event.target.checked) {
        const some = box.querySelector('.option[data-type="videos"] input[type="radio"][value="some"]');
        if (some) some.checked = true;
      }
      showChanged(card);
    });
    showChanged(card);
  });

  return { read, reset, describe, has: (stepId) => (declarations[stepId] || []).length > 0 };
})();
