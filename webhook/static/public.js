// viber-vote public page: refreshes the total (and results, when published) every 5 seconds.
(function () {
  "use strict";

  var REFRESH_MS = 5000;
  var page = document.getElementById("public");
  if (!page || !window.fetch) { return; }
  var url = page.dataset.liveUrl;

  function setText(el, text) {
    if (el && el.textContent !== String(text)) { el.textContent = String(text); }
  }

  // The unit's wording for each plural category of the page's language ("голос", "голасы", "галасоў").
  var plurals = window.Intl && Intl.PluralRules ? new Intl.PluralRules(document.documentElement.lang) : null;

  function render(data) {
    setText(document.getElementById("total"), data.total);
    var unit = document.getElementById("total-unit");
    var category = plurals ? plurals.select(data.total) : (data.total === 1 ? "one" : "other");
    setText(unit, unit.dataset[category] || unit.dataset.other);
    if (!data.options) { return; }
    data.options.forEach(function (option) {
      var item = document.querySelector('#bars li[data-option="' + CSS.escape(option.id) + '"]');
      if (!item) { return; }
      setText(item.querySelector(".votes"), option.votes);
      setText(item.querySelector(".percent"), option.percent + "%");
      item.querySelector(".fill").setAttribute("width", option.percent);
    });
  }

  function refresh() {
    fetch(url, { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) { render(data); } })
      .catch(function () { /* keep the last numbers; try again later */ })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }

  setTimeout(refresh, REFRESH_MS);
})();
