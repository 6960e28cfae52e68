// The console's routes page: redraws each route's chart whenever the host has read its
// metrics anew (every 10 s), from the live view's stream of charts
// (/console/live/events?charts=1: points and captions as JSON). Every text goes in as
// textContent, every point as an attribute, never as markup.
"use strict";
(() => {
  const status = document.getElementById("charts-status");
  const source = new EventSource("/console/live/events?charts=1");
  source.onopen = () => {
    status.textContent = "The charts are redrawn after each reading, every 10 s.";
  };
  source.onerror = () => {
    // A stream refused (the session gone, every place taken) is not tried again.
    status.textContent = source.readyState === EventSource.CLOSED
      ? "The charts are not redrawn: reload the page (at most 16 routes pages redraw at once)."
      : "The charts wait for the host…";
  };
  source.addEventListener("charts", (event) => {
    const charts = JSON.parse(event.data);
    for (const cell of document.querySelectorAll("td.charts[data-route]")) {
      const chart = charts[cell.dataset.route];
      if (!chart) continue;
      for (const line of cell.querySelectorAll("polyline")) {
        const points = chart.points[line.getAttribute("class")];
        if (points !== undefined) line.setAttribute("points", points);
      }
      const rates = cell.querySelector(".rates-caption");
      if (rates) rates.textContent = chart.rates;
      const p99 = cell.querySelector(".p99-caption");
      if (p99) p99.textContent = chart.p99;
    }
  });
  // The session ended or the host shuts down: the charts stay as they were.
  source.addEventListener("ended", (event) => {
    status.textContent = event.data;
    source.close();
  });
})();
