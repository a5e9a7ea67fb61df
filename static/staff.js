// Staff pages: times in the viewer's local time zone, and a confirmation before destructive
// actions. The pages are complete without this script: times then read in UTC and forms
// submit at once. (A static file because the Content-Security-Policy allows no inline script.)
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // "2026-12-06 19:20 GMT+1": the same shape as the server's UTC text, in local time.
  function localText(date) {
    var zone = "";
    try {
      var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(date);
      parts.forEach(function (p) { if (p.type === "timeZoneName") zone = " " + p.value; });
    } catch (e) { zone = ""; }
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      " " + pad(date.getHours()) + ":" + pad(date.getMinutes()) + zone;
  }

  // Rewrites every <time datetime> under `root` not done yet; the UTC text becomes the tooltip.
  function localize(root) {
    (root || document).querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      el.title = el.textContent;
      el.textContent = localText(date);
      el.setAttribute("data-local", "");
    });
  }

  // A <time> element for an ISO moment, already in local time (used by live-updating pages).
  function timeElement(iso) {
    var el = document.createElement("time");
    el.setAttribute("datetime", iso);
    var date = new Date(iso);
    el.textContent = iso;
    if (!isNaN(date.getTime())) {
      el.title = date.toISOString().slice(0, 16).replace("T", " ") + " UTC";
      el.textContent = localText(date);
      el.setAttribute("data-local", "");
    }
    return el;
  }

  // Forms marked data-confirm="…" ask first; cancelling leaves everything as it was.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  }, true);

  // The heading a table box sits under, to name the box.
  function headingBefore(el) {
    for (var node = el.previousElementSibling; node; node = node.previousElementSibling) {
      if (/^H[1-6]$/.test(node.tagName)) return node.textContent.trim();
    }
    return "";
  }

  // A table box that scrolls sideways gets a tab stop and a name, so it can be scrolled with
  // the keyboard; one that fits gets neither (no useless tab stops).
  function markScrollers() {
    document.querySelectorAll(".table-scroll").forEach(function (box) {
      var scrolls = box.scrollWidth > box.clientWidth + 1;
      if (scrolls && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", (headingBefore(box) || "Table") + " (scrolls sideways)");
      } else if (!scrolls && box.getAttribute("role") === "region") {
        box.removeAttribute("tabindex");
        box.removeAttribute("role");
        box.removeAttribute("aria-label");
      }
    });
  }

  function start() {
    localize(document);
    markScrollers();
    var pending = null;
    window.addEventListener("resize", function () {
      window.clearTimeout(pending);
      pending = window.setTimeout(markScrollers, 150);
    });
  }

  window.staffPages = { localize: localize, timeElement: timeElement, markScrollers: markScrollers };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
