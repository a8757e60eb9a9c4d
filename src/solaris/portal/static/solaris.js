// SOLARIS Gateway pages: draws the charts described by <script type="application/json"> blocks
// next to each <canvas data-chart>, and shows the copy buttons (`data-copy`: the id of the field
// whose text they copy). The pages work without it; the charts need Chart.js.
(function () {
  "use strict";
  var PALETTE = ["#f59e0b", "#4f46e5", "#10b981", "#ef4444", "#0ea5e9", "#a855f7", "#64748b", "#eab308"];

  function draw(canvas) {
    var source = document.getElementById(canvas.getAttribute("data-chart"));
    if (!source || typeof window.Chart === "undefined") return;
    var spec = JSON.parse(source.textContent);
    var round = spec.type === "doughnut";
    spec.data.datasets.forEach(function (set, i) {
      var color = PALETTE[i % PALETTE.length];
      set.backgroundColor = round ? PALETTE.slice(0, set.data.length) : color;
      set.borderColor = round ? "#fff" : color;
      set.borderWidth = round ? 2 : 2;
      set.borderRadius = spec.type === "bar" ? 4 : 0;
      set.tension = 0.3;
      set.pointRadius = 0;
      set.fill = spec.type === "line" ? { target: "origin", above: color + "22" } : false;
      set.maxBarThickness = 28;
    });
    var language = document.documentElement.lang || "en";
    var numbers = new Intl.NumberFormat(language);
    spec.options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { display: round || spec.data.datasets.length > 1, position: round ? "right" : "top" },
        tooltip: {
          callbacks: {
            label: function (item) {
              return (item.dataset.label || item.label) + ": " + numbers.format(item.parsed.y !== undefined ? item.parsed.y : item.parsed);
            }
          }
        }
      },
      scales: round ? {} : {
        x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12, color: "#64748b" } },
        y: { beginAtZero: true, grid: { color: "#eef2f7" }, border: { display: false },
             ticks: { color: "#64748b", precision: 0, callback: function (v) { return numbers.format(v); } } }
      }
    };
    new window.Chart(canvas, spec);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  function copyButton(button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var done = function () { button.textContent = button.getAttribute("data-copied"); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done);
      } else {  // plain http (a test deployment): the older way, from a selection
        field.select();
        if (document.execCommand("copy")) done();
      }
    });
  }

  function start() {
    drawAll();
    document.querySelectorAll("button[data-copy]").forEach(copyButton);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
  document.addEventListener("htmx:afterSwap", function (event) { drawAll(event.target); });
})();
