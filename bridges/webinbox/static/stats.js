// The stats page: cards, a stacked bar chart of tags over time (plain SVG, no library), a table.
// Text goes in with textContent only; it is signed in by the inbox's session cookie.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = ["#d9534f", "#f0ad4e", "#3498db", "#8e44ad", "#16a085", "#c0392b", "#f1c40f", "#2ecc71", "#7f8c8d", "#e67e22"];
  var BUCKET = { "1h": "5m", "6h": "30m", "24h": "1h", "7d": "12h" };

  function el(tag, text) { var e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; }
  function svg(tag, attrs) { var e = document.createElementNS(SVG, tag); for (var k in attrs) e.setAttribute(k, attrs[k]); return e; }
  function fmt(sec) { if (sec === null || sec === undefined) return "–"; return sec >= 60 ? (sec / 60).toFixed(1) + " min" : Math.round(sec) + " s"; }

  function cards(stats) {
    var box = document.getElementById("cards");
    box.replaceChildren();
    [["Conversations", stats.conversations], ["Handed off", stats.handed_off],
     ["Handoff rate", stats.handoff_rate === null ? "–" : Math.round(stats.handoff_rate * 100) + "%"],
     ["AI-resolved", stats.ai_resolved_share === null ? "–" : Math.round(stats.ai_resolved_share * 100) + "%"],
     ["First reply p50", fmt(stats.first_human_reply_seconds.p50)],
     ["Resolution p50", fmt(stats.resolution_seconds.p50)],
     ["CSAT", stats.csat.share_up === null ? "–" : Math.round(stats.csat.share_up * 100) + "% 👍"]].forEach(function (c) {
      var d = el("div"); d.className = "card"; d.appendChild(el("b", String(c[1]))); d.appendChild(el("span", c[0])); box.appendChild(d);
    });
  }

  function chart(series) {
    var tags = Object.keys(series.series).sort();
    var n = series.buckets.length, W = 640, H = 240, pad = 28;
    var totals = series.buckets.map(function (_, i) { return tags.reduce(function (s, t) { return s + series.series[t][i]; }, 0); });
    var max = Math.max(1, Math.max.apply(null, totals));
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img" });
    root.appendChild(svg("line", { x1: pad, y1: H - pad, x2: W, y2: H - pad, stroke: "#999" }));
    var label = svg("text", { x: 2, y: 12, "font-size": 11, fill: "#555" }); label.textContent = String(max); root.appendChild(label);
    var bw = (W - pad) / n;
    for (var i = 0; i < n; i++) {
      var y = H - pad;
      tags.forEach(function (t, k) {
        var v = series.series[t][i];
        if (!v) return;
        var h = (H - 2 * pad) * v / max;
        y -= h;
        var r = svg("rect", { x: pad + i * bw + 1, y: y, width: Math.max(1, bw - 2), height: h, fill: COLORS[k % COLORS.length],
                              "data-tag": t, "data-count": v, "data-bucket": series.buckets[i] });
        var title = svg("title", {}); title.textContent = t + ": " + v + " (" + series.buckets[i] + ")"; r.appendChild(title);
        root.appendChild(r);
      });
    }
    var box = document.getElementById("chart"); box.replaceChildren(root);
    var legend = document.getElementById("legend"); legend.replaceChildren();
    tags.forEach(function (t, k) { var s = el("span", t); s.style.setProperty("--c", COLORS[k % COLORS.length]); legend.appendChild(s); });
  }

  function table(stats) {
    var body = document.getElementById("tag-table"); body.replaceChildren();
    Object.keys(stats.tags).forEach(function (t) {
      var tr = el("tr"); tr.setAttribute("data-tag", t);
      tr.appendChild(el("td", t)); tr.appendChild(el("td", String(stats.tags[t]))); body.appendChild(tr);
    });
  }

  function load() {
    var since = document.getElementById("since").value;
    fetch("/inbox/api/stats?since=" + since + "&bucket=" + BUCKET[since], { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status === 401 ? "Sign in on the inbox page first." : "HTTP " + r.status); return r.json(); })
      .then(function (data) { document.getElementById("error").textContent = ""; cards(data.stats); chart(data.series); table(data.stats); })
      .catch(function (e) { document.getElementById("error").textContent = e.message; });
  }
  document.getElementById("since").addEventListener("change", load);
  load();
  setInterval(load, 60000);
})();
