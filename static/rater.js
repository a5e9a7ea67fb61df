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

  // Trial integrity: what happened on this page while the item ran. Sent with the answer;
  // the researcher sees the counts and flags, the rater is not interrupted.
  var events = { hidden: 0, hiddenMs: 0, blur: 0, copy: 0, paste: 0 };
  var hiddenSince = document.hidden ? performance.now() : null;
  if (!stepForm) {
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) {
        events.hidden += 1;
        hiddenSince = performance.now();
      } else if (hiddenSince !== null) {
        events.hiddenMs += performance.now() - hiddenSince;
        hiddenSince = null;
      }
    });
    window.addEventListener("blur", function () { events.blur += 1; });
    document.addEventListener("copy", function () { events.copy += 1; });
    document.addEventListener("cut", function () { events.copy += 1; });
    document.addEventListener("paste", function () { events.paste += 1; });
  }
  function fillEvents() {
    var hiddenMs = events.hiddenMs + (hiddenSince !== null ? performance.now() - hiddenSince : 0);
    var fields = { "hidden-count": events.hidden, "hidden-ms": Math.trunc(hiddenMs),
                   "blur-count": events.blur, "copy-count": events.copy, "paste-count": events.paste };
    for (var id in fields) {
      var field = document.getElementById(id);
      if (field) field.value = String(fields[id]);
    }
  }

  // A probability study's slider: its value shown beside it; 50 % refused where the study
  // leaves it out (the server refuses it too).
  var slider = document.getElementById("probability");
  var shown = document.getElementById("probability-shown");
  function checkSlider() {
    if (!slider) return;
    if (shown) shown.textContent = slider.value + " %";
    var evenOdds = slider.getAttribute("data-even-odds") === "true";
    slider.setCustomValidity(!evenOdds && slider.value === "50"
      ? "Move the slider above or below 50 %." : "");
  }
  if (slider) { slider.addEventListener("input", checkSlider); checkSlider(); }

  function send(verdict) {
    if (sent) return;
    if (!stepForm && verdict !== "timeout" && !form.reportValidity()) return;
    sent = true;
    if (stepForm) {
      // Time is up for the step flag: the server would refuse it now; go on.
      window.location.assign("/rate/item");
      return;
    }
    fillEvents();
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
    // Typing a justification, or a study without the two buttons: no shortcuts.
    var target = event.target;
    if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) && target.type !== "radio") return;
    if (!document.getElementById("btn-correct")) return;
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
