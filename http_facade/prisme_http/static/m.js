/* Prisme tracker. No cookies, no stored ids; a random id per event makes retries safe. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch) return;
  var data = script.dataset;
  var base = (data.prismeUrl || new URL(script.src).origin).replace(/\/+$/, "");
  var domain = data.domain || location.host;
  var own = function (url) { return url.replace(location.host, domain); };
  var referrer = own(document.referrer);

  function uuid() {
    var b = crypto.getRandomValues(new Uint8Array(16)), h = "", i;
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    for (i = 0; i < 16; i++) {
      h += (b[i] + 256).toString(16).slice(1) + (i === 3 || i === 5 || i === 7 || i === 9 ? "-" : "");
    }
    return h;
  }

  function send(path, body) {
    var headers = {
      "X-Prisme-Referrer": own(location.href),
      "X-Prisme-Document-Referrer": referrer,
      "X-Prisme-Event-Id": uuid()
    };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    (function attempt(n) {
      var retry = function () { if (n < 3) setTimeout(attempt, 1000 << n, n + 1); };
      fetch(base + path, {
        method: "POST", headers: headers, body: body, keepalive: true,
        credentials: "omit", referrerPolicy: "no-referrer-when-downgrade"
      }).then(function (r) { if (r.status === 503) retry(); }, retry);
    })(0);
  }

  function pageview() {
    send("/api/v1/events/pageviews");
    referrer = own(location.href);
  }

  var push = history.pushState;
  history.pushState = function () {
    push.apply(this, arguments);
    pageview();
  };
  addEventListener("popstate", pageview);
  window.prisme = {
    trigger: function (name, properties) {
      send("/api/v1/events/custom/" + encodeURIComponent(name),
        properties === undefined ? undefined : JSON.stringify(properties));
    }
  };
  pageview();
})();
