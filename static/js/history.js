// History page: while a run in the table is still running, refresh the table every few seconds.
(() => {
  "use strict";
  if (!document.querySelector("#runs .status-running")) return;
  setInterval(() => { if (!document.hidden) window.location.reload(); }, 5000);
})();
