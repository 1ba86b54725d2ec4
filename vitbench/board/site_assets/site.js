/* vitbench site: sortable tables and a row filter, written for this site (no library).
 *
 * The pages work without it: tables come in leaderboard order and every number is in the HTML. With it, a click
 * on a sortable column header (th[data-sort]) sorts that table by the cells' data-value (numbers) or text, and
 * sets aria-sort on the header; the filter box shows only the rows whose data-search text holds every word typed.
 */
(function () {
  "use strict";

  var status = null;

  function cellValue(row, index, kind) {
    var cell = row.cells[index];
    if (!cell) { return null; }
    if (kind === "number") {
      var raw = cell.getAttribute("data-value");
      if (raw === null || raw === "") { return null; }
      var value = parseFloat(raw);
      return isNaN(value) ? null : value;
    }
    var text = cell.textContent.trim();
    return text === "" ? null : text.toLowerCase();
  }

  function compare(a, b, kind) {
    if (kind === "number") { return a - b; }
    return a < b ? -1 : (a > b ? 1 : 0);
  }

  function sortTable(table, th, index) {
    var kind = th.getAttribute("data-sort");
    var current = th.getAttribute("aria-sort");
    var first = th.getAttribute("data-first") || "ascending";
    var direction = current === "ascending" ? "descending" : (current === "descending" ? "ascending" : first);
    var sign = direction === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (ra, rb) {
      var a = cellValue(ra, index, kind), b = cellValue(rb, index, kind);
      if (a === null && b === null) { return ra._order - rb._order; }
      if (a === null) { return 1; }   /* empty cells last, whichever the direction */
      if (b === null) { return -1; }
      return sign * compare(a, b, kind) || ra._order - rb._order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
      if (other !== th && other.hasAttribute("data-sort")) { other.removeAttribute("aria-sort"); }
    });
    th.setAttribute("aria-sort", direction);
    if (status) {
      var title = table.caption && table.caption.querySelector(".cap");
      status.textContent = (title ? title.firstChild.textContent.trim() + ": " : "") +
        "sorted by " + th.textContent.trim() + ", " + direction;
    }
  }

  function enhanceTable(table) {
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row, i) { row._order = i; });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      if (!th.hasAttribute("data-sort")) { return; }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) { button.appendChild(th.firstChild); }
      th.appendChild(button);
      button.addEventListener("click", function () { sortTable(table, th, index); });
    });
  }

  function applyFilter(input, tables, count) {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0, total = 0;
    tables.forEach(function (table) {
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var text = (row.getAttribute("data-search") || row.textContent).toLowerCase();
        var keep = words.every(function (w) { return text.indexOf(w) !== -1; });
        row.hidden = !keep;
        total += 1;
        shown += keep ? 1 : 0;
      });
    });
    count.textContent = words.length ? shown + " of " + total + " table rows shown" : "";
  }

  function init() {
    status = document.getElementById("sort-status");
    var tables = Array.prototype.slice.call(document.querySelectorAll("table.sortable"));
    tables.forEach(enhanceTable);
    var box = document.getElementById("filter-box");
    var input = document.getElementById("filter");
    var count = document.getElementById("filter-count");
    if (box && input && count) {
      box.hidden = false;
      input.addEventListener("input", function () { applyFilter(input, tables, count); });
      if (input.value) { applyFilter(input, tables, count); }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
