/* Prisme tracker, with the current Prisme tracker's interface. No cookies, no stored ids:
 * a random id per event makes retries safe; events that got no answer are queued and sent
 * again as a batch. Built (minified) into prisme_http/static/wa.js. */
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

  /* Events that got no answer (offline, or the service unavailable) wait in `queue`, kept in
   * sessionStorage across this tab's pages, and go again as one batch, with when they
   * happened, under their own ids (stored once however often they are sent). */
  var KEY = "prismeAnalytics.queue", BATCH = "/api/v1/events/batch", queue = [], timer, delay = 1000;
  var keep = window.Request && "keepalive" in Request.prototype;
  try { queue = JSON.parse(sessionStorage.getItem(KEY)) || []; } catch (blocked) { /* none */ }
  function save() {
    try { sessionStorage.setItem(KEY, JSON.stringify(queue)); } catch (blocked) { /* memory */ }
  }
  function later(events) {
    if (!events.length) return;
    queue = events.concat(queue).slice(-100);
    save();
    if (!timer) timer = setTimeout(function () { timer = 0; flush(); }, delay);
    delay = Math.min(delay * 2, 60000);
  }
  function flush(leaving) {
    var events = queue.slice(0, 100);
    if (!events.length) return;
    var body = JSON.stringify({ sent_at: new Date().toISOString(), events: events });
    if (leaving) { /* no answer will come: they stay queued, for this tab's next page */
      if (!keep && navigator.sendBeacon && navigator.sendBeacon(base + BATCH, body)) return;
    } else {
      queue = queue.slice(events.length);
      save();
    }
    fetch(base + BATCH, { method: "POST", body: body, keepalive: true, credentials: "omit" })
      .then(function (r) {
        if (leaving) queue = queue.filter(function (e) { return events.indexOf(e) < 0; });
        if (r.status === 503) return later(events);
        save();
        if (!r.ok) return;
        delay = 1000;
        return r.json().then(function (answer) {
          later(events.filter(function (e, i) { return answer.results[i].status === 503; }));
        });
      }, function () { if (!leaving) later(events); });
  }

  function send(route, headers, body, event, accepted) {
    if (!enabled) return;
    event.page_url = headers["X-Prisme-Referrer"] = headers["X-Prisme-Referrer"] || page();
    event.event_id = headers["X-Prisme-Event-Id"] = uuid();
    event.timestamp = new Date().toISOString();
    if (visitorId) headers["X-Prisme-Visitor-Id"] = visitorId;
    fetch(base + route, {
      method: "POST", headers: headers, body: body, keepalive: true,
      credentials: "omit", referrerPolicy: "no-referrer-when-downgrade"
    }).then(function (r) {
      if (r.status === 503) later([event]);
      if (r.ok && accepted) accepted(event);
    }, function () { later([event]); });
  }

  /* Engagement: time the page is visible and focused, and the deepest scroll (the share of
   * the document above the window's bottom), reported as increments for the page view the
   * service accepted last: when the page is hidden or left, and before the next page view. */
  var view, engaged = 0, reported = 0, since = 0, depth = 0, shown = 0;
  function tick() {
    var now = Date.now();
    if (since) engaged += now - since;
    since = document.visibilityState === "visible" && document.hasFocus() ? now : 0;
  }
  function scrolled() {
    var height = document.documentElement.scrollHeight;
    depth = Math.max(depth, Math.min(100, Math.round((scrollY + innerHeight) / height * 100) || 100));
  }
  function report() {
    tick();
    var ms = Math.min(engaged - reported, 1800000);
    if (!view || data.engagement === "false" || (ms <= 0 && depth <= shown)) return;
    reported = engaged;
    shown = depth;
    var numbers = { pageview_id: view.event_id, engaged_ms: ms, scroll_depth: depth };
    send("/api/v1/events/engagement", { "X-Prisme-Referrer": view.page_url },
      JSON.stringify(numbers), Object.assign({ kind: "engagement" }, numbers));
  }

  var first = true;
  function pageview(options) {
    report();
    view = engaged = reported = depth = shown = since = 0;
    tick();
    options = options || {};
    domain = options.domain || domain;
    visitorId = options.visitorId || visitorId;
    path = options.path || (first ? data.path : undefined);
    var code = options.status || (first ? data.status : undefined);
    var url = page(), headers = { "X-Prisme-Referrer": url, "X-Prisme-Document-Referrer": referrer };
    var event = { kind: "pageview", document_referrer: referrer, visitor_id: visitorId };
    if (code) headers["X-Prisme-Status"] = event.status = String(code);
    first = false; /* data-path and data-status are the first page view's */
    send("/api/v1/events/pageviews", headers, undefined, event, function (accepted) {
      view = accepted;
      scrolled();
    });
    referrer = url;
  }

  function click(event) {
    var link = event.target.closest && event.target.closest("a[href]");
    if (!link || (event.type === "auxclick" && event.button !== 1)) return;
    var url = new URL(link.href, location.href), target;
    url.search = "";
    target = url.href;
    if (data.outboundLinks !== "false" && url.host !== location.host && /^https?:$/.test(url.protocol)) {
      send("/api/v1/events/outbound-links", {}, target, { kind: "outbound_link", link: target });
    }
    if (data.fileDownloads !== "false" && (link.hasAttribute("download") || downloads.test(url.pathname))) {
      send("/api/v1/events/file-downloads", {}, target, { kind: "file_download", url: target });
    }
  }

  document.querySelectorAll("a[ping]").forEach(function (a) {
    a.setAttribute("ping", a.getAttribute("ping").split(/\s+/).filter(function (p) {
      return p.indexOf(base) < 0;
    }).join(" "));
  });
  addEventListener("online", function () { flush(); });
  addEventListener("pagehide", function () { report(); flush(true); });
  document.addEventListener("visibilitychange", function () {
    tick();
    if (document.visibilityState === "hidden") { report(); flush(true); }
  });
  addEventListener("focus", tick);
  addEventListener("blur", tick);
  addEventListener("scroll", scrolled, { passive: true });
  flush();
  addEventListener("click", click, true);
  addEventListener("auxclick", click, true);
  window.prisme = {
    pageview: pageview,
    trigger: function (name, properties) {
      send("/api/v1/events/custom/" + encodeURIComponent(name),
        properties === undefined ? {} : { "Content-Type": "application/json" },
        properties === undefined ? undefined : JSON.stringify(properties),
        { kind: "custom", name: name, properties: properties });
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
