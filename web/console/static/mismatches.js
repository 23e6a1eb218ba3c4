/* Mismatch queue: "select all" for the bulk form and a count of what is selected. No inline
   script (CSP): the page marks its parts with data attributes. */
(function () {
  "use strict";

  function setupBulk() {
    var form = document.getElementById("mm-bulk");
    if (!form) { return; }
    var boxes = Array.prototype.slice.call(document.querySelectorAll("input.mm-pick:not([disabled])"));
    var count = form.querySelector("[data-mm-count]");
    function refresh() {
      var n = boxes.filter(function (b) { return b.checked; }).length;
      if (count) { count.textContent = n ? String(n) : ""; }
    }
    boxes.forEach(function (b) { b.addEventListener("change", refresh); });
    var all = form.querySelector("[data-mm-select-all]");
    if (all) {
      all.addEventListener("click", function () {
        var every = boxes.every(function (b) { return b.checked; });
        boxes.forEach(function (b) { b.checked = !every; });
        refresh();
      });
    }
    form.addEventListener("submit", function (event) {
      if (!boxes.some(function (b) { return b.checked; })) { event.preventDefault(); }
    });
    refresh();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setupBulk);
  } else {
    setupBulk();
  }
}());
