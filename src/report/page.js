"use strict";
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var N = data.columns;
  var names = { changes: "lines changed", files: "files", cpu: "CPU", rss: "RSS", threads: "threads", fds: "fds", maps: "mappings" };
  var colours = { changes: "#3b5bdb", cpu: "#e8590c", rss: "#1c7ed6", threads: "#7048e8", fds: "#2b8a3e", maps: "#0b7285" };

  function pad(n, w) { n = String(n); while (n.length < w) n = "0" + n; return n; }
  function clock(ms) {
    var d = new Date(ms + data.tzOffsetMs);
    return pad(d.getUTCHours(), 2) + ":" + pad(d.getUTCMinutes(), 2) + ":" + pad(d.getUTCSeconds(), 2) + "." + pad(d.getUTCMilliseconds(), 3);
  }
  function kib(v) {
    if (v < 1024) return v.toFixed(0) + " KiB";
    if (v < 1048576) return (v / 1024).toFixed(1) + " MiB";
    return (v / 1048576).toFixed(2) + " GiB";
  }
  function fmt(id, v) {
    if (id === "cpu") return v.toFixed(1) + "%";
    if (id === "rss") return kib(v);
    return String(v);
  }
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }
  // The index in series s of the filled column nearest to c, within reach.
  function nearest(s, c, reach) {
    var a = s.i, lo = 0, hi = a.length;
    if (!hi) return -1;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (a[mid] < c) lo = mid + 1; else hi = mid; }
    var best = -1, dist = reach + 1;
    [lo - 1, lo].forEach(function (k) {
      if (k >= 0 && k < a.length && Math.abs(a[k] - c) < dist) { dist = Math.abs(a[k] - c); best = k; }
    });
    return best;
  }

  // Hover and click on the charts: one cursor on every plot, one readout.
  var charts = document.getElementById("charts");
  var readout = document.getElementById("readout");
  var pinned = false;
  if (charts) {
    var plots = Array.prototype.slice.call(charts.querySelectorAll(".row:not(.axis) .plot"));
    var cursors = plots.map(function (p) { var c = document.createElement("div"); c.className = "cursor"; p.appendChild(c); return c; });
    var show = function (ev) {
      var plot = ev.currentTarget, box = plot.getBoundingClientRect();
      var f = Math.min(Math.max((ev.clientX - box.left) / box.width, 0), 0.999999);
      var c = Math.floor(f * N), reach = Math.max(2, Math.ceil(N / box.width * 40));
      var row = plot.parentNode, id = row.getAttribute("data-series");
      var named = null, parts = [];
      if (!id) {
        // The event lanes: the nearest event.
        var best = null;
        data.events.forEach(function (e) { var d = Math.abs(e[0] - c); if (d <= reach && (!best || d < Math.abs(best[0] - c))) best = e; });
        if (best) named = { seq: best[1], t: best[2], what: best[4] };
      }
      ["changes", "files", "cpu", "rss", "threads", "fds", "maps"].forEach(function (k) {
        var s = data.charts[k], j = s ? nearest(s, c, reach) : -1;
        if (j < 0) return;
        if (!named && k === (id || "")) named = { seq: s.seq[j], t: s.t[j] };
        if (k === "files") return;
        var v = s.min[j] === s.max[j] ? fmt(k, s.max[j]) : fmt(k, s.min[j]) + "–" + fmt(k, s.max[j]);
        parts.push('<span class="v"><i style="background:' + colours[k] + '"></i>' + names[k] + " " + esc(v) + "</span>");
      });
      var t = data.t0 + (data.t1 - data.t0) * (c + 0.5) / N;
      var head = named ? "<b>#" + named.seq + "</b> " + clock(named.t) + (named.what ? " · " + esc(named.what) : "")
                       : '<span class="dim">' + clock(t) + "</span>";
      readout.innerHTML = head + parts.join("");
      cursors.forEach(function (cur) { cur.style.left = (f * 100) + "%"; cur.style.display = "block"; });
    };
    plots.forEach(function (p) {
      p.addEventListener("mousemove", function (ev) { if (!pinned) show(ev); });
      p.addEventListener("click", function (ev) { pinned = !pinned; readout.classList.toggle("pinned", pinned); if (pinned) show(ev); });
      p.addEventListener("mouseleave", function () { if (!pinned) cursors.forEach(function (cur) { cur.style.display = "none"; }); });
    });
  }

  // Sortable static tables (events): click a header; again to reverse.
  function sortRows(table, col, num, desc) {
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (r) {
      var cell = r.cells[col], v = cell.getAttribute("data-v");
      if (v === null) v = cell.textContent;
      return { r: r, k: num ? parseFloat(String(v).replace(/^[#+-]/, "")) || 0 : String(v).toLowerCase() };
    });
    rows.sort(function (a, b) { var x = a.k < b.k ? -1 : a.k > b.k ? 1 : 0; return desc ? -x : x; });
    var frag = document.createDocumentFragment();
    rows.forEach(function (x) { frag.appendChild(x.r); });
    body.appendChild(frag);
  }
  function sortable(ths, onSort) {
    Array.prototype.forEach.call(ths, function (th, col) {
      th.addEventListener("click", function () {
        var desc = th.classList.contains("asc");
        Array.prototype.forEach.call(ths, function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(desc ? "desc" : "asc");
        onSort(col, th, desc);
      });
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    sortable(table.querySelectorAll("th"), function (col, th, desc) { sortRows(table, col, th.getAttribute("data-type") === "num", desc); });
  });

  // Files: the table and the histories are drawn from the data, as far as
  // they are scrolled to, so a page of 10,000 files opens at once.
  var files = (data.files && data.files.list) || [], diffs = data.diffs || [];
  var showCmd = data.files ? data.files.show : "";
  var KIND = { c: "created", m: "modified", d: "deleted", r: "renamed" };
  files.forEach(function (f) { f.c.forEach(function (x) { x[1] += data.t0; x[2] = KIND[x[2]] || x[2]; }); });
  function day(ms) {
    var d = new Date(ms + data.tzOffsetMs);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1, 2) + "-" + pad(d.getUTCDate(), 2) + " " + clock(ms);
  }
  function quote(p) { return /^[A-Za-z0-9\/._\-+,:]+$/.test(p) ? p : "'" + p.replace(/'/g, "'\\''") + "'"; }
  // A unified diff as coloured lines (escaped), as diff -u in a terminal.
  function diffHtml(lines) {
    return lines.map(function (x) {
      var cls = x[0], html = esc(x[1]);
      html = cls ? '<span class="' + cls + '">' + html + "</span>" : html;
      for (var j = 2; j < x.length; j++) html += '\n<span class="n">' + esc(x[j]) + "</span>";
      return html;
    }).join("\n") + "\n";
  }
  // Lines of a diff: [class, line, "\ No newline" lines attached...].
  function parseDiff(text) {
    var lines = text.split("\n"), out = [], last = null;
    if (lines.length && lines[lines.length - 1] === "") lines.pop();
    for (var k = 0; k < lines.length; k++) {
      var l = lines[k], c = l.charAt(0), cls;
      if (k < 2 && (l.indexOf("--- ") === 0 || l.indexOf("+++ ") === 0)) cls = "m";
      else if (c === "\\" && last) { last.push(l); continue; }
      else cls = c === "+" ? "a" : c === "-" ? "r" : c === "@" ? "h" : c === "\\" ? "n" : "";
      last = [cls, l]; out.push(last);
    }
    return out;
  }
  // The way back, as monitord show --reverse prints it: names and hunk
  // ranges swapped, and in each run of changed lines the removed (once
  // added) lines first.
  function reverseLines(lines) {
    var out = [], dels = [], adds = [];
    function flush() {
      adds.forEach(function (x) { out.push(["r", "-" + x[1].slice(1)].concat(x.slice(2))); });
      dels.forEach(function (x) { out.push(["a", "+" + x[1].slice(1)].concat(x.slice(2))); });
      dels = []; adds = [];
    }
    for (var k = 0; k < lines.length; k++) {
      var x = lines[k];
      if (x[0] === "m" && k === 0 && lines[1] && lines[1][0] === "m") {
        out.push(["m", "--- " + lines[1][1].slice(4)]); out.push(["m", "+++ " + x[1].slice(4)]); k++; continue;
      }
      if (x[0] === "r") { dels.push(x); continue; }
      if (x[0] === "a") { adds.push(x); continue; }
      flush();
      if (x[0] === "h") {
        var m = /^@@ -(\S+) \+(\S+) @@(.*)$/.exec(x[1]);
        out.push(["h", m ? "@@ -" + m[2] + " +" + m[1] + " @@" + m[3] : x[1]]);
      } else out.push(x);
    }
    flush();
    return out;
  }
  var reverse = document.getElementById("reverse");
  var rendered = {};
  function diffOf(d) {
    var key = (reverse && reverse.checked ? "r" : "f") + d;
    if (!rendered[key]) {
      var lines = parseDiff(diffs[d]);
      rendered[key] = diffHtml(reverse && reverse.checked ? reverseLines(lines) : lines);
    }
    return rendered[key];
  }
  function articleHtml(i) {
    var f = files[i], c = f.c, n = c.length, html = [], without = [];
    html.push('<article class="file" id="f' + i + '"><h3><a href="#f' + i + '">' + esc(f.p) + '</a> <span class="dim">' + n +
      " change" + (n === 1 ? "" : "s") + ', <span class="add">+' + f.a + '</span> <span class="del">-' + f.r + "</span></span></h3>");
    c.forEach(function (x) { if (x[7] < 0) without.push("#" + x[0]); });
    if (without.length) {
      var listed = without.length > 24 ? without.slice(0, 12).join(" ") + " … " + without.slice(-6).join(" ") : without.join(" ");
      html.push('<p class="older dim">' + without.length + " change" + (without.length === 1 ? "" : "s") + " without their diff here: " +
        listed + " — <code>" + esc(showCmd + quote(f.p)) + "</code></p>");
    }
    c.forEach(function (x) {
      if (x[7] < 0) return;
      html.push('<div class="change"><div class="change-head"><span class="seq">#' + x[0] + "</span> " + day(x[1]) +
        ' <span class="kind k-' + x[2] + '">' + x[2] + "</span>" + (x[5] ? " from <code>" + esc(x[5]) + "</code>" : "") +
        ' <span class="add">+' + x[3] + '</span> <span class="del">-' + x[4] + "</span>" + (x[6] ? " · by " + esc(x[6]) : "") + "</div>");
      if (diffs[x[7]] === "") html.push('<p class="dim same">' + (x[2] === "renamed" ? "content unchanged" : "no line changed") + "</p></div>");
      else html.push('<pre class="diff" data-d="' + x[7] + '">' + diffOf(x[7]) + "</pre></div>");
    });
    html.push("</article>");
    return html.join("");
  }

  var view = files.map(function (_, i) { return i; });  // the files shown, in table order
  var histView = view.slice();                          // the files shown, by path
  var tableShown = 0, histShown = 0;
  var wrap = document.getElementById("file-table-wrap");
  var tbody = wrap ? wrap.querySelector("tbody") : null;
  var tableFoot = document.getElementById("file-table-foot");
  var list = document.getElementById("history-list"), histFoot = document.getElementById("history-foot");
  function rowHtml(i) {
    var f = files[i], first = f.c[0], last = f.c[f.c.length - 1];
    return '<tr><td><a href="#f' + i + '" data-f="' + i + '">' + esc(f.p) + '</a></td><td class="num">' + f.c.length +
      '</td><td class="num add">+' + f.a + '</td><td class="num del">-' + f.r + "</td><td>" + esc(f.w) +
      '</td><td class="time">#' + first[0] + " " + clock(first[1]) + '</td><td class="time">#' + last[0] + " " + clock(last[1]) + "</td></tr>";
  }
  function moreRows() {
    if (!tbody) return;
    var end = Math.min(view.length, tableShown + 200), html = [];
    for (var k = tableShown; k < end; k++) html.push(rowHtml(view[k]));
    tbody.insertAdjacentHTML("beforeend", html.join(""));
    tableShown = end;
    tableFoot.textContent = view.length > tableShown ? tableShown + " of " + view.length + " files shown; scroll the table for more." : "";
  }
  // Draw histories until `until` (an index in histView) or a screenful's worth.
  function moreHistories(until) {
    if (!list) return;
    var html = [], size = 0, k = histShown;
    while (k < histView.length && (k <= until || (k - histShown < 40 && size < 200000))) {
      var f = files[histView[k]];
      f.c.forEach(function (x) { if (x[7] >= 0) size += diffs[x[7]].length; });
      html.push(articleHtml(histView[k])); k++;
    }
    list.insertAdjacentHTML("beforeend", html.join(""));
    histShown = k;
    histFoot.textContent = histView.length > histShown ? histShown + " of " + histView.length + " files shown; more follow as you scroll." : "";
  }
  function resetFiles() {
    if (tbody) { tbody.innerHTML = ""; tableShown = 0; moreRows(); }
    if (list) { list.innerHTML = ""; histShown = 0; moreHistories(-1); }
  }
  if (wrap) wrap.addEventListener("scroll", function () {
    if (wrap.scrollTop + wrap.clientHeight > wrap.scrollHeight - 300 && tableShown < view.length) moreRows();
  });
  if (histFoot && "IntersectionObserver" in window) {
    new IntersectionObserver(function (entries) {
      if (entries[0].isIntersecting && histShown < histView.length) moreHistories(-1);
    }, { rootMargin: "1500px" }).observe(histFoot);
  }
  // Go to a file's history, drawing it first if it is not yet.
  function goTo(i) {
    var at = histView.indexOf(i);
    if (at >= histShown) moreHistories(at);
    var el = document.getElementById("f" + i);
    if (el) el.scrollIntoView();
  }
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest('a[href^="#f"]');
    if (!a) return;
    ev.preventDefault();
    var i = parseInt(a.getAttribute("href").slice(2), 10);
    history.replaceState(null, "", "#f" + i);
    goTo(i);
  });
  var keys = [
    function (i) { return files[i].p; }, function (i) { return files[i].c.length; }, function (i) { return files[i].a; },
    function (i) { return files[i].r; }, function (i) { return files[i].w; }, function (i) { return files[i].c[0][0]; },
    function (i) { return files[i].c[files[i].c.length - 1][0]; }
  ];
  var order = null;
  function sortView() {
    if (!order) return;
    var key = keys[order.k], desc = order.desc;
    view.sort(function (a, b) { var x = key(a), y = key(b), c = x < y ? -1 : x > y ? 1 : a - b; return desc ? -c : c; });
  }
  if (wrap) sortable(wrap.querySelectorAll("th"), function (col, th, desc) {
    order = { k: col, desc: desc }; sortView(); tbody.innerHTML = ""; tableShown = 0; moreRows(); wrap.scrollTop = 0;
  });

  // Search over paths and diff text (every embedded diff).
  var search = document.getElementById("search"), count = document.getElementById("search-count");
  var lower = null, timer = 0;
  function runSearch() {
    var q = search.value.trim().toLowerCase();
    if (q && !lower) lower = { p: files.map(function (f) { return f.p.toLowerCase(); }), d: diffs.map(function (d) { return d.toLowerCase(); }) };
    var hit = files.map(function (f, i) {
      return !q || lower.p[i].indexOf(q) >= 0 || f.c.some(function (x) { return x[7] >= 0 && lower.d[x[7]].indexOf(q) >= 0; });
    });
    histView = files.map(function (_, i) { return i; }).filter(function (i) { return hit[i]; });
    view = histView.slice(); sortView();
    resetFiles();
    count.textContent = q ? histView.length + " file" + (histView.length === 1 ? "" : "s") + " match" : "";
  }
  if (search) search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(runSearch, 150); });

  function applyReverse() {
    Array.prototype.forEach.call(document.querySelectorAll("pre.diff[data-d]"), function (pre) {
      pre.innerHTML = diffOf(+pre.getAttribute("data-d"));
    });
  }
  if (reverse) {
    reverse.addEventListener("change", applyReverse);
    if (location.hash === "#reverse") reverse.checked = true;
  }
  resetFiles();
  if (/^#f\d+$/.test(location.hash)) goTo(parseInt(location.hash.slice(2), 10));

  // When the page was ready: read by the tests and the benchmark.
  window.addEventListener("load", function () {
    document.body.setAttribute("data-load-ms", performance.now().toFixed(1));
    requestAnimationFrame(function () { document.body.setAttribute("data-frame-ms", performance.now().toFixed(1)); });
  });
})();
