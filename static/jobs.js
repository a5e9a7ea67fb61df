// Live progress on the admin jobs page: polls /admin/jobs.json every 2 s and updates each
// row in place (state, bar, counts, attempts, worker, times, error). The page is complete
// without this script; a job that is not on the page yet (or gone) reloads it.
(function () {
  "use strict";
  var POLL_MS = 2000;

  function rowIds() {
    var ids = [];
    document.querySelectorAll("tr[data-job-id]").forEach(function (row) {
      ids.push(row.getAttribute("data-job-id"));
    });
    return ids;
  }

  function setText(row, field, text) {
    var el = row.querySelector('[data-field="' + field + '"]');
    if (el && el.textContent !== text) el.textContent = text;
  }

  // "started <time>" in the viewer's local time (staff.js), or nothing while `iso` is null.
  function setTime(row, field, label, iso) {
    var el = row.querySelector('[data-field="' + field + '"]');
    if (!el) return;
    var shown = el.querySelector("time");
    if (!iso) {
      if (el.textContent !== "") el.textContent = "";
      return;
    }
    if (shown && shown.getAttribute("datetime") === iso) return;
    el.textContent = label;
    el.appendChild(window.staffPages ? window.staffPages.timeElement(iso) : document.createTextNode(iso));
  }

  function update(row, job) {
    setText(row, "state", job.state);
    var bar = row.querySelector('[data-field="bar"]');
    if (bar) {
      bar.max = job.progress_max;
      bar.value = job.progress_done;
    }
    setText(row, "count", job.progress_done + " / " + job.progress_total);
    setText(row, "pace", job.pace);
    setText(row, "attempts", job.attempts + " / " + job.max_attempts);
    setText(row, "worker", job.worker);
    setTime(row, "started", "started ", job.started);
    setTime(row, "finished", "finished ", job.finished);
    setText(row, "error", job.error);
    if (!job.cancellable) {
      var actions = row.querySelector('[data-field="actions"]');
      if (actions && actions.firstChild) actions.textContent = "";
    }
  }

  function poll() {
    fetch("/admin/jobs.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        var jobs = data.jobs || [];
        var shown = rowIds();
        var listed = jobs.map(function (job) { return job.id; });
        if (shown.join(",") !== listed.join(",")) {
          window.location.reload();
          return;
        }
        jobs.forEach(function (job) {
          var row = document.querySelector('tr[data-job-id="' + job.id + '"]');
          if (row) update(row, job);
        });
        window.setTimeout(poll, POLL_MS);
      })
      .catch(function () {
        // Logged out or offline: try again later, the page stays readable as it is.
        window.setTimeout(poll, POLL_MS * 5);
      });
  }

  window.setTimeout(poll, POLL_MS);
})();
