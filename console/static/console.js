// feedgen console: small helpers, no framework. Every page works without this file;
// it adds local times, auto-refresh and fetch calls that carry the CSRF token.
(function () {
  "use strict";
  var feedgen = (window.feedgen = window.feedgen || {});

  feedgen.csrfToken = function () {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  };

  // send(method, url, body): JSON in, JSON out; the session cookie plus X-CSRF-Token.
  // Resolves to {status, ok, data}; data.error is the server's sentence on failure.
  feedgen.send = function (method, url, body) {
    var init = { method: method, credentials: "same-origin",
                 headers: { "Accept": "application/json", "X-CSRF-Token": feedgen.csrfToken() } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { status: response.status, ok: response.ok, data: data };
      });
    });
  };

  // <time datetime="...Z"> in the viewer's zone; UTC stays in the title (on hover).
  feedgen.localTimes = function (root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) { return; }
      el.textContent = d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric",
                                                     hour: "2-digit", minute: "2-digit" });
    });
  };

  // <body data-refresh="5">: reload every N seconds while the page says something is in progress.
  feedgen.autoRefresh = function () {
    var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
    if (seconds > 0) {
      window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
    }
  };

  document.addEventListener("DOMContentLoaded", function () {
    feedgen.localTimes();
    feedgen.autoRefresh();
  });
})();
