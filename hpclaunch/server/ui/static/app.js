// Live updates by short polling: every few seconds fetch this same page and swap
// in its <main>. The server caches each page's data for a few seconds, so any
// number of open tabs costs the database one read per page per interval.
// Without JavaScript the pages are complete; reload to refresh.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch || !window.DOMParser) return;
  var seconds = parseInt(live.getAttribute("data-poll") || "0", 10);
  if (!seconds) return;
  function busy() {
    var el = document.activeElement;
    return el && live.contains(el) && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(el.tagName);
  }
  function openDetails() {
    var open = [];
    live.querySelectorAll("details").forEach(function (d, i) { if (d.open) open.push(i); });
    return open;
  }
  function tick() {
    if (document.hidden || busy()) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Hpclaunch-Poll": "1" } })
      .then(function (reply) {
        if (reply.redirected || !reply.ok) return null;  // signed out or an error: keep what is shown
        return reply.text();
      })
      .then(function (text) {
        if (!text || busy()) return;
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        if (!fresh) return;
        var open = openDetails();
        live.innerHTML = fresh.innerHTML;
        live.querySelectorAll("details").forEach(function (d, i) { if (open.indexOf(i) >= 0) d.open = true; });
      })
      .catch(function () {});
  }
  window.setInterval(tick, seconds * 1000);
})();
