// The console's live page: decisions as the host publishes them (server-sent events),
// newest first. Every text goes in as textContent, never as markup.
"use strict";
(() => {
  const table = document.getElementById("live");
  const status = document.getElementById("live-status");
  const MAX_ROWS = 200;
  // Each cell is labelled with its column, for the narrow layout.
  const labels = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  const source = new EventSource(table.dataset.source);
  const cell = (row, text, className) => {
    const td = row.insertCell();
    td.textContent = text;
    const label = labels[td.cellIndex];
    if (label && row.className === "decision") td.dataset.label = label;
    if (className) td.className = className;
    return td;
  };
  source.onopen = () => {
    status.textContent = "Watching: decisions appear here as pushes are answered.";
  };
  source.onerror = () => {
    // A stream refused (the session gone, every place taken) is not tried again.
    status.textContent = source.readyState === EventSource.CLOSED
      ? "Closed: reload the page, or log in again."
      : "Disconnected; trying again…";
  };
  source.addEventListener("missed", (event) => {
    status.textContent = `Up to ${event.data} decisions not shown: more came than the page can show.`;
  });
  source.addEventListener("ended", (event) => {
    status.textContent = event.data;
    source.close();
  });
  source.onmessage = (event) => {
    const seen = JSON.parse(event.data);
    const group = document.createElement("tbody");
    const row = group.insertRow();
    row.className = "decision";
    row.dataset.decision = seen.decision;
    row.dataset.messageId = seen.message_id;
    cell(row, new Date(seen.at_ms).toISOString().slice(11, 23));
    cell(row, seen.route);
    cell(row, seen.message_id);
    cell(row, seen.decision, seen.status >= 200 && seen.status < 300 ? "ok" : "kept");
    cell(row, String(seen.status));
    cell(row, seen.attempt === undefined ? "-" : String(seen.attempt));
    cell(row, `${seen.duration_ms.toFixed(1)} ms`);
    cell(row, seen.tags.join(", "));
    cell(row, seen.reason === undefined ? "" : seen.reason, "reason");
    if (seen.body !== undefined) {
      const pre = document.createElement("pre");
      pre.textContent = seen.body.text;
      const note = seen.body.clipped ? ` (its beginning; ${seen.body.bytes} bytes in all)` : "";
      const td = cell(group.insertRow(), `Body${note}:`);
      td.colSpan = 9;
      td.appendChild(pre);
    }
    table.insertBefore(group, table.tBodies[0] || null);
    while (table.tBodies.length > MAX_ROWS) table.tBodies[table.tBodies.length - 1].remove();
  };
})();
