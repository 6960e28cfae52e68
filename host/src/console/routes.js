// The console's routes page: redraws each route's chart whenever the host has read its
// metrics anew (every 10 s), from the live view's stream of charts
// (/console/live/events?charts=1: points and captions as JSON). Every text goes in as
// textContent, every point as an attribute, never as markup.
"use strict";
(() => {
  const source = new EventSource("/console/live/events?charts=1");
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
  source.addEventListener("ended", () => source.close());
})();
