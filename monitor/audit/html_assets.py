"""The HTML report's inline style and script: the page must stand alone in a mail."""

from __future__ import annotations

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #eef; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; white-space: nowrap; }
tr.action td { background: #fff3f0; }
.ok { color: #1a7f37; } .bad { color: #b42318; font-weight: 600; }
.note { color: #555; }
"""

# Clicking a header sorts its table by that column, again to reverse. Each cell may carry
# data-sort (a number, or an ISO date or time); numbers compare as numbers, ISO dates as
# text (their order is the calendar's), the rest in French collation; empty cells last.
SCRIPT = """
(function () {
  var iso = /^\\d{4}-\\d{2}-\\d{2}/;
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    return raw === null ? cell.textContent.trim() : raw;
  }
  function compare(a, b) {
    if (a === "" || b === "") { return a === b ? 0 : (a === "" ? 1 : -1); }
    var x = Number(a), y = Number(b);
    if (!isNaN(x) && !isNaN(y)) { return x - y; }
    if (iso.test(a) && iso.test(b)) { return a < b ? -1 : (a > b ? 1 : 0); }
    return a.localeCompare(b, "fr", {numeric: true, sensitivity: "base"});
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        var up = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("thead th").forEach(function (other) {
          other.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r, s) {
          var a = key(r.cells[column]), b = key(s.cells[column]);
          if (a === "" || b === "") { return compare(a, b); }
          return up ? compare(a, b) : compare(b, a);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
"""
