/* Prisme tracker, with the current Prisme tracker's interface. No cookies, no stored ids:
 * a random id per event makes retries safe. Built (minified) into prisme_http/static/wa.js. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch) return;
  var data = script.dataset;
  var on = function (value) { return value !== undefined && value !== "false"; };
  var enabled = true;
  try {
    enabled = localStorage.getItem("prismeAnalytics.tracking.enable") !== "false";
  } catch (blocked) { /* storage blocked: tracking stays on */ }
  var base = (data.prismeUrl || new URL(script.src).origin).replace(/\/+$/, "");
  var manual = on(data.manual);
  var domain = data.domain || location.host;
  var path = data.path;
  var visitorId = data.visitorId;
  var referrer = document.referrer.replace(location.host, domain);
  var downloads = /\.(pdf|zip|rar|7z|gz|tgz|bz2|xz|dmg|exe|msi|pkg|deb|rpm|apk|iso|csv|xlsx?|docx?|pptx?|odt|ods|epub|mp3|mp4|mov|avi|mkv|wav)$/i;

  function uuid() {
    var b = crypto.getRandomValues(new Uint8Array(16)), h = "", i;
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    for (i = 0; i < 16; i++) {
      h += (b[i] + 256).toString(16).slice(1) + (i === 3 || i === 5 || i === 7 || i === 9 ? "-" : "");
    }
    return h;
  }

  function page() {
    return location.protocol + "//" + domain + (path || location.pathname) + location.search;
  }

  function send(route, headers, body) {
    if (!enabled) return;
    headers["X-Prisme-Referrer"] = headers["X-Prisme-Referrer"] || page();
    headers["X-Prisme-Event-Id"] = uuid();
    if (visitorId) headers["X-Prisme-Visitor-Id"] = visitorId;
    (function attempt(n) {
      var retry = function () { if (n < 3) setTimeout(attempt, 1000 << n, n + 1); };
      fetch(base + route, {
        method: "POST", headers: headers, body: body, keepalive: true,
        credentials: "omit", referrerPolicy: "no-referrer-when-downgrade"
      }).then(function (r) { if (r.status === 503) retry(); }, retry);
    })(0);
  }

  var first = true;
  function pageview(options) {
    options = options || {};
    domain = options.domain || domain;
    visitorId = options.visitorId || visitorId;
    path = options.path || (first ? data.path : undefined);
    var code = options.status || (first ? data.status : undefined);
    var url = page(), headers = { "X-Prisme-Referrer": url, "X-Prisme-Document-Referrer": referrer };
    if (code) headers["X-Prisme-Status"] = String(code);
    first = false; /* data-path and data-status are the first page view's */
    send("/api/v1/events/pageviews", headers);
    referrer = url;
  }

  function click(event) {
    var link = event.target.closest && event.target.closest("a[href]");
    if (!link || (event.type === "auxclick" && event.button !== 1)) return;
    var url = new URL(link.href, location.href), target;
    url.search = "";
    target = url.href;
    if (data.outboundLinks !== "false" && url.host !== location.host && /^https?:$/.test(url.protocol)) {
      send("/api/v1/events/outbound-links", {}, target);
    }
    if (data.fileDownloads !== "false" && (link.hasAttribute("download") || downloads.test(url.pathname))) {
      send("/api/v1/events/file-downloads", {}, target);
    }
  }

  document.querySelectorAll("a[ping]").forEach(function (a) {
    a.setAttribute("ping", a.getAttribute("ping").split(/\s+/).filter(function (p) {
      return p.indexOf(base) < 0;
    }).join(" "));
  });
  addEventListener("click", click, true);
  addEventListener("auxclick", click, true);
  window.prisme = {
    pageview: pageview,
    trigger: function (name, properties) {
      send("/api/v1/events/custom/" + encodeURIComponent(name),
        properties === undefined ? {} : { "Content-Type": "application/json" },
        properties === undefined ? undefined : JSON.stringify(properties));
    }
  };
  if (manual) return;
  var push = history.pushState;
  history.pushState = function () {
    push.apply(this, arguments);
    pageview();
  };
  addEventListener("popstate", function () { pageview(); });
  pageview();
})();
