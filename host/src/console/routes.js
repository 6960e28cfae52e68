// The console's routes page: redraws each route's chart every 10 s from
// /console/routes/charts (points and captions as JSON). Every text goes in as
// textContent, every point as an attribute, never as markup.
"use strict";
(() => {
  const EVERY_MS = 10000;
  const redraw = async () => {
    let charts;
    try {
      const response = await fetch("/console/routes/charts", { credentials: "same-origin" });
      if (!response.ok) return;
      charts = await response.json();
    } catch (_) {
      return; // The host is away; the chart stays as it was.
    }
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
  };
  setInterval(redraw, EVERY_MS);
})();
