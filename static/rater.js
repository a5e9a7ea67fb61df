// Rater pages: countdown, keyboard shortcuts, automatic timeout at zero.
// The server owns the deadline; this script only shows it and answers on time.
// The step page (after "wrong") shares the item's countdown and moves on at zero.
(function () {
  "use strict";
  var stepForm = document.getElementById("step-form");
  var form = document.getElementById("judge-form") || stepForm;
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
    if (stepForm) {
      // Time is up for the step flag: the server would refuse it now; go on.
      window.location.assign("/rate/item");
      return;
    }
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
    if (stepForm) { sent = true; return; }
    event.preventDefault();
    var button = event.submitter;
    send(button && button.value ? button.value : "timeout");
  });

  document.addEventListener("keydown", function (event) {
    if (stepForm || event.altKey || event.ctrlKey || event.metaKey) return;
    var key = event.key.toLowerCase();
    if (key === "c") { event.preventDefault(); send("correct"); }
    else if (key === "w") { event.preventDefault(); send("wrong"); }
  });

  // Screen readers hear the time left at these marks only (the timer itself stays silent,
  // or it would be read out every second).
  var announcer = document.getElementById("announcer");
  var unit = countdown.getAttribute("data-unit") || "s";
  var template = countdown.getAttribute("data-announce") || "{n} s";
  var marks = [30, 10, 5];
  var spoken = {};
  function tick() {
    var left = remaining();
    var seconds = Math.ceil(left / 1000);
    countdown.textContent = seconds + " " + unit;
    if (bar) bar.style.width = (100 * left / limit).toFixed(1) + "%";
    if (left <= 10000) countdown.classList.add("urgent");
    for (var m = 0; m < marks.length; m++) {
      var mark = marks[m];
      if (seconds <= mark && seconds > mark - 1 && !spoken[mark] && announcer) {
        spoken[mark] = true;
        announcer.textContent = template.replace("{n}", String(mark));
      }
    }
    if (left <= 0) { send("timeout"); return; }
    window.setTimeout(tick, Math.min(250, left));
  }
  tick();
})();
