(function () {
  "use strict";
  // Filter boxes: each input[data-target] filters the items (.fi) of its list by their text; a matching
  // village group opens and shows only its matching rows. Without this script every group still opens by hand.
  function text(el) {
    if (el.ggText === undefined) { el.ggText = el.textContent.toLowerCase(); }
    return el.ggText;
  }
  function apply(input) {
    var list = document.getElementById(input.getAttribute("data-target"));
    if (!list) { return; }
    var q = input.value.trim().toLowerCase();
    var items = list.querySelectorAll(".fi");
    var shown = 0;
    for (var i = 0; i < items.length; i++) {
      var item = items[i];
      var hit = !q || text(item).indexOf(q) >= 0;
      item.hidden = !hit;
      if (hit) { shown += 1; }
      if (item.tagName === "DETAILS") {
        if (item.ggOpen === undefined) { item.ggOpen = item.open; }
        item.open = q ? hit : item.ggOpen;
        var head = item.querySelector("summary");
        var whole = !q || (head && text(head).indexOf(q) >= 0);
        var rows = item.querySelectorAll("tr.f");
        for (var j = 0; j < rows.length; j++) { rows[j].hidden = !(whole || text(rows[j]).indexOf(q) >= 0); }
      }
    }
    var count = document.querySelector(".gg-count[data-for='" + list.id + "']");
    if (count) { count.textContent = q ? shown + " / " + items.length : ""; }
  }
  var inputs = document.querySelectorAll("input.gg-filter[data-target]");
  for (var k = 0; k < inputs.length; k++) {
    (function (input) {
      var timer = null;
      input.hidden = false;
      input.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(function () { apply(input); }, 120);
      });
    })(inputs[k]);
  }
  window.__gisgrid_report_ready = true;
})();
