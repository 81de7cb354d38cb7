// viber-vote dashboard: polls /dashboard/api/state every second and redraws the page.
// Everything taken from the server is set with textContent (never innerHTML).
(function () {
  "use strict";

  var POLL_MS = 1000;
  var SVG = "http://www.w3.org/2000/svg";
  var app = document.getElementById("app");
  if (!app) { return; }
  var pollId = app.dataset.poll;
  var stateUrl = app.dataset.stateUrl + "?poll=" + encodeURIComponent(pollId);
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var lastOk = 0;
  var timer = null;

  function $(id) { return document.getElementById(id); }

  function setText(el, text) {
    if (el && el.textContent !== String(text)) { el.textContent = String(text); }
  }

  function duration(seconds) {
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    if (d > 0) { return d + "d " + h + "h"; }
    if (h > 0) { return h + "h " + m + "m"; }
    if (m > 0) { return m + "m " + s + "s"; }
    return s + "s";
  }

  var STATUS_TEXT = { open: "open", closed: "closed", not_open: "not open" };

  function renderPoll(state) {
    var poll = state.poll;
    setText($("question"), poll.question);
    var status = $("status");
    status.dataset.status = poll.status;
    setText(status, STATUS_TEXT[poll.status] || poll.status);
    var left = "";
    if (poll.closes_in_s !== null) { left = "closes in " + duration(poll.closes_in_s); }
    else if (poll.opens_in_s !== null) { left = "opens in " + duration(poll.opens_in_s); }
    setText($("time-left"), left);
    setText($("total"), state.total.toLocaleString("en"));
    setText($("total-unit"), state.total === 1 ? "vote counted" : "votes counted");
    $("btn-open").disabled = poll.status === "open";
    $("btn-closed").disabled = poll.status === "closed";
  }

  function renderBars(state) {
    var list = $("bars");
    state.options.forEach(function (option) {
      var item = list.querySelector('li[data-option="' + CSS.escape(option.id) + '"]');
      if (!item) { return; }
      setText(item.querySelector(".label"), option.label);
      setText(item.querySelector(".votes"), option.votes.toLocaleString("en"));
      setText(item.querySelector(".percent"), option.percent.toFixed(1) + "%");
      item.dataset.votes = option.votes;
      item.querySelector(".fill").style.width = option.percent + "%";
    });
  }

  function renderChart(state) {
    var svg = $("chart");
    var minutes = state.minutes;
    var width = 600, height = 160, top = 8;
    var max = 1;
    minutes.forEach(function (pair) { if (pair[1] > max) { max = pair[1]; } });
    var step = width / minutes.length;
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    [0.5, 1].forEach(function (fraction) {
      var line = document.createElementNS(SVG, "line");
      var y = height - (height - top) * fraction;
      line.setAttribute("x1", 0); line.setAttribute("x2", width);
      line.setAttribute("y1", y); line.setAttribute("y2", y);
      svg.appendChild(line);
    });
    minutes.forEach(function (pair, i) {
      if (pair[1] === 0) { return; }
      var h = Math.max(2, (height - top) * pair[1] / max);
      var rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", (i * step + 1).toFixed(2));
      rect.setAttribute("width", Math.max(1, step - 2).toFixed(2));
      rect.setAttribute("y", (height - h).toFixed(2));
      rect.setAttribute("height", h.toFixed(2));
      if (i === minutes.length - 1) { rect.setAttribute("class", "now"); }
      var title = document.createElementNS(SVG, "title");
      title.textContent = new Date(pair[0] * 60000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) +
        ": " + pair[1] + " votes";
      rect.appendChild(title);
      svg.appendChild(rect);
    });
    svg.dataset.total = minutes.reduce(function (sum, pair) { return sum + pair[1]; }, 0);
    setText($("chart-max"), "peak " + max + "/min");
  }

  function renderNumbers(selector, numbers, isAlarming) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), function (dd) {
      var key = dd.dataset.key;
      var value = numbers[key];
      setText(dd, value === undefined ? "–" : value.toLocaleString("en"));
      dd.classList.toggle("alert", isAlarming(key, value));
    });
  }

  function renderPipeline(state) {
    renderNumbers("#pipeline dd[data-key]", state.pipeline, function (key, value) {
      return (key === "dead_letters" && value > 0) || (key === "workers" && value === 0);
    });
    // A number claimed by a second account is a take-over attempt: show it in red.
    renderNumbers("#contacts-refused dd[data-key]", state.contacts_refused, function (key, value) {
      return key === "bound_elsewhere" && value > 0;
    });
  }

  // One row per messenger: votes counted in this poll, callbacks refused, phone numbers refused.
  function renderChannels(state) {
    var body = $("channels-body");
    if (!body || !state.channels) { return; }
    var byChannel = state.channels;
    var names = Object.keys(byChannel.votes).concat(Object.keys(byChannel.rejected), Object.keys(byChannel.contacts_refused));
    names = names.filter(function (name, i) { return names.indexOf(name) === i; }).sort();
    function sum(numbers) {
      return Object.keys(numbers || {}).reduce(function (total, key) { return total + numbers[key]; }, 0);
    }
    var signature = JSON.stringify(byChannel);
    if (body.dataset.signature === signature) { return; }
    body.dataset.signature = signature;
    while (body.firstChild) { body.removeChild(body.firstChild); }
    names.forEach(function (name) {
      var row = document.createElement("tr");
      row.dataset.channel = name;
      [name, byChannel.votes[name] || 0, sum(byChannel.rejected[name]), sum(byChannel.contacts_refused[name])]
        .forEach(function (value) {
          var cell = document.createElement("td");
          cell.textContent = typeof value === "number" ? value.toLocaleString("en") : value;
          row.appendChild(cell);
        });
      body.appendChild(row);
    });
  }

  function renderAudit(state) {
    var list = $("audit");
    var entries = state.audit;
    var signature = JSON.stringify(entries);
    if (list.dataset.signature === signature) { return; }
    list.dataset.signature = signature;
    while (list.firstChild) { list.removeChild(list.firstChild); }
    if (entries.length === 0) {
      var empty = document.createElement("li");
      empty.textContent = "Nothing yet.";
      list.appendChild(empty);
    }
    entries.forEach(function (entry) {
      var li = document.createElement("li");
      var when = document.createElement("time");
      if (entry.when) {
        var date = new Date(entry.when * 1000);
        when.dateTime = date.toISOString();
        when.textContent = date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
      }
      var what = document.createElement("span");
      what.className = "what";
      what.textContent = entry.what;
      li.appendChild(when);
      li.appendChild(document.createTextNode(String(entry.who) + " · "));
      li.appendChild(what);
      if (entry.poll) { li.appendChild(document.createTextNode(" · " + entry.poll)); }
      list.appendChild(li);
    });
  }

  function render(state) {
    renderPoll(state);
    renderBars(state);
    renderChart(state);
    renderPipeline(state);
    renderChannels(state);
    renderAudit(state);
    lastOk = Date.now();
    var updated = $("updated");
    updated.classList.remove("stale");
    setText(updated, "live · updated " + new Date(state.now * 1000).toLocaleTimeString());
  }

  function showTrouble(message) {
    var updated = $("updated");
    if (Date.now() - lastOk > 3 * POLL_MS) {
      updated.classList.add("stale");
      setText(updated, message);
    }
  }

  function refresh() {
    clearTimeout(timer);
    return fetch(stateUrl, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) {
          window.location.href = "/dashboard/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (state) { if (state) { render(state); } })
      .catch(function (error) { showTrouble("connection problem (" + error.message + "), retrying…"); })
      .then(function () { timer = setTimeout(refresh, POLL_MS); });
  }

  function onStatusSubmit(event) {
    event.preventDefault();
    var form = event.currentTarget;
    if (!window.confirm(form.dataset.confirm)) { return; }
    var button = form.querySelector("button");
    button.disabled = true;
    var message = $("control-message");
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
      body: new FormData(form)
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { throw new Error(body.error || ("HTTP " + response.status)); }
        render(body);
        setText(message, "Done: the poll is now " + (STATUS_TEXT[body.poll.status] || body.poll.status) + ".");
      });
    }).catch(function (error) {
      setText(message, "Failed: " + error.message);
      button.disabled = false;
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("form.status-form"), function (form) {
    form.addEventListener("submit", onStatusSubmit);
  });

  var select = $("poll-select");
  if (select) {
    select.addEventListener("change", function () {
      window.location.search = "?poll=" + encodeURIComponent(select.value);
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { refresh(); }
  });

  refresh();
})();
