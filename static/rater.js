// Rater page: countdown, keyboard shortcuts, automatic timeout at zero.
// The server owns the deadline; this script only shows it and answers on time.
(function () {
  "use strict";
  var form = document.getElementById("judge-form");
  var countdown = document.getElementById("countdown");
  if (!form || !countdown) return;
  var bar = document.getElementById("countdown-bar");
  var elapsedField = document.getElementById("client-elapsed");
  var remainingAtLoad = parseInt(countdown.getAttribute("data-remaining-ms"), 10) || 0;
  var limit = parseInt(countdown.getAttribute("data-limit-ms"), 10) || 1;
  var loadedAt = performance.now();
  var sent = false;

  function remaining() {
    return Math.max(0, remainingAtLoad - (performance.now() - loadedAt));
  }

  function send(verdict) {
    if (sent) return;
    sent = true;
    // Time since the item was served, as this browser measured it.
    elapsedField.value = String(Math.trunc(limit - remaining()));
    var buttons = form.querySelectorAll("button");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true;
    var field = document.createElement("input");
    field.type = "hidden";
    field.name = "verdict";
    field.value = verdict;
    form.appendChild(field);
    form.submit();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = event.submitter;
    send(button && button.value ? button.value : "timeout");
  });

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    var key = event.key.toLowerCase();
    if (key === "c") { event.preventDefault(); send("correct"); }
    else if (key === "w") { event.preventDefault(); send("wrong"); }
  });

  var announced = false;
  function tick() {
    var left = remaining();
    var seconds = Math.ceil(left / 1000);
    countdown.textContent = seconds + " s";
    if (bar) bar.style.width = (100 * left / limit).toFixed(1) + "%";
    if (left <= 10000) countdown.classList.add("urgent");
    if (left <= 10000 && !announced) {
      announced = true;
      countdown.setAttribute("aria-live", "assertive");
    }
    if (left <= 0) { send("timeout"); return; }
    window.setTimeout(tick, Math.min(250, left));
  }
  tick();
})();
