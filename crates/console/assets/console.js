// fleetbus console: the live tail. Everything else is plain HTML forms and links.
// Rows are built with textContent only, so nothing from an event is parsed as HTML.
"use strict";

(function () {
  const table = document.getElementById("tail");
  if (!table) return;
  const body = table.querySelector("tbody");
  const status = document.getElementById("tail-status");
  const pauseButton = document.getElementById("tail-pause");
  const resumeButton = document.getElementById("tail-resume");
  const MAX_ROWS = 500;   // rows kept on the page
  const MAX_HELD = 5000;  // events held while paused; the oldest go first
  let paused = false;
  let held = [];

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function link(td, href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
    td.appendChild(document.createTextNode(" "));
  }

  function resourceHref(r) {
    if (r.startsWith("device/")) return "/ui/devices/" + encodeURIComponent(r.slice(7));
    if (r.startsWith("user/")) return "/ui/users/" + encodeURIComponent(r.slice(5));
    return "/ui/events?resource=" + encodeURIComponent(r);
  }

  function show(ev) {
    const row = document.createElement("tr");
    row.className = "new" + (ev.status ? " " + ev.status : "");
    row.dataset.id = ev.id;
    cell(row, ev.received).className = "time";
    cell(row, ev.source);
    cell(row, ev["detail-type"]);
    const resources = cell(row, "");
    for (const r of ev.resources || []) link(resources, resourceHref(r), r);
    link(cell(row, ""), "/ui/events/" + encodeURIComponent(ev.id), ev.id);
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  }

  function setStatus(text) {
    status.textContent = text;
  }

  const source = new EventSource(table.dataset.stream);
  source.addEventListener("open", function () { setStatus(paused ? "paused" : "live"); });
  source.addEventListener("error", function () { setStatus("reconnecting…"); });
  source.addEventListener("ev", function (message) {
    const ev = JSON.parse(message.data);
    if (paused) {
      held.push(ev);
      if (held.length > MAX_HELD) held.shift();
      setStatus("paused (" + held.length + " waiting)");
    } else {
      show(ev);
    }
  });

  pauseButton.addEventListener("click", function () {
    paused = true;
    pauseButton.disabled = true;
    resumeButton.disabled = false;
    setStatus("paused");
  });
  resumeButton.addEventListener("click", function () {
    paused = false;
    pauseButton.disabled = false;
    resumeButton.disabled = true;
    for (const ev of held) show(ev);
    held = [];
    setStatus("live");
  });
})();
