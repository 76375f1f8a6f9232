// The dashboard: reads the stats API (/api/v1/stats/) with the stats token and draws it.
// The token comes from the URL fragment (#token=...) once, then lives in sessionStorage.
"use strict";

(() => {
  const API = "/api/v1/stats/";
  const TOKEN_KEY = "prisme.statsToken";
  const LIVE_EVERY_MS = 5000;
  // One query at a time: the embedded store answers them in turn, and each is bounded by the
  // stats timeout from when it arrives (queued here, none waits there behind the others).
  const CONCURRENT = 1;
  const GIVE_UP_MS = 60000;
  const RETRIES = 6;
  const ROWS = 10;
  const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const DAY_MS = 86400000;

  // Each ranked list: its route, its title, the filter a click on a row adds, what it counts.
  const LISTS = [
    { route: "top-pages", title: "Top pages", column: "Page", filter: "path", unit: "pageviews" },
    { route: "top-entry-pages", title: "Entry pages", column: "Page", filter: "entry-path" },
    { route: "top-exit-pages", title: "Exit pages", column: "Page", filter: "exit-path" },
    { route: "top-referrers", title: "Referrers", column: "Referrer", filter: "referrer" },
    { route: "top-utm-sources", title: "UTM sources", column: "Source", filter: "utm-source" },
    { route: "top-utm-mediums", title: "UTM mediums", column: "Medium", filter: "utm-medium" },
    { route: "top-utm-campaigns", title: "UTM campaigns", column: "Campaign", filter: "utm-campaign" },
    { route: "top-countries", title: "Countries", column: "Country", filter: "country" },
    { route: "top-browsers", title: "Browsers", column: "Browser", filter: "browser" },
    { route: "top-operating-systems", title: "Operating systems", column: "System", filter: "os" },
    { route: "top-devices", title: "Devices", column: "Device", filter: "device" },
    { route: "top-custom-events", title: "Custom events", column: "Event", unit: "events" },
    { route: "top-outbound-links", title: "Outbound links", column: "Link", unit: "events", optional: true },
    { route: "top-file-downloads", title: "File downloads", column: "File", unit: "events", optional: true },
  ];
  const FILTER_NAMES = Object.fromEntries(LISTS.filter((l) => l.filter).map((l) => [l.filter, l.title]));
  FILTER_NAMES.path = "Page";
  const UNITS = { pageviews: "Page views", sessions: "Sessions", events: "Events" };

  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat();
  const percent = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });

  const state = { domain: "", period: "7d", from: "", to: "", filters: [] };
  let token = "";
  let generation = 0;
  let liveTimer = 0;
  let liveRuns = 0;
  let chart = null;
  let unreachable = false;

  // ---- the stats API -------------------------------------------------------------------

  class Refused extends Error {
    constructor(status, body) {
      super(body.message || body.error || `HTTP ${status}`);
      this.status = status;
      this.reason = body.error || "";
    }
  }
  class Unreachable extends Error {}

  const waiting = [];
  let running = 0;

  function queued(run) {
    return new Promise((resolve, reject) => {
      waiting.push({ run, resolve, reject });
      next();
    });
  }

  function next() {
    while (running < CONCURRENT && waiting.length) {
      const { run, resolve, reject } = waiting.shift();
      running += 1;
      run().then(resolve, reject).finally(() => {
        running -= 1;
        next();
      });
    }
  }

  // One stats call in its turn; `mine` is the load it belongs to (a newer load makes it moot;
  // null: none).
  function ask(route, params, mine) {
    return queued(() => patiently(route, params, mine));
  }

  // The service goes on counting a query it answered too late, and answers the same query
  // from that: asked again at once (keeping the turn, so that the store counts one thing at
  // a time), a slow query is answered in its own time, up to RETRIES timeouts.
  async function patiently(route, params, mine) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await call(route, params, mine);
      } catch (error) {
        if (!(error instanceof Refused && error.reason === "query timeout") || attempt >= RETRIES) throw error;
      }
    }
  }

  // Calls asked at once in one turn: the service counts the session lists of one range and
  // filters in a single pass when they arrive together.
  function askTogether(asks, mine) {
    const calls = queued(async () => {
      const started = asks.map(([route, params]) => patiently(route, params, mine));
      await Promise.allSettled(started);
      return started;
    });
    return asks.map((_, i) => calls.then((started) => started[i]));
  }

  async function call(route, params, mine) {
    if (mine !== null && mine !== generation) throw new Moot();
    const query = new URLSearchParams(params);
    const shown = token;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), GIVE_UP_MS);
    let response;
    try {
      response = await fetch(API + route + "?" + query, {
        headers: { Authorization: "Bearer " + shown },
        signal: abort.signal,
        cache: "no-store",
      });
    } catch (error) {
      throw abort.signal.aborted
        ? new Refused(0, { message: `no answer within ${GIVE_UP_MS / 1000} s` })
        : new Unreachable(String(error));
    } finally {
      clearTimeout(timer);
    }
    let body = {};
    try {
      body = await response.json();
    } catch (error) {
      if (response.ok) throw new Refused(response.status, { message: "the answer is not JSON" });
    }
    if (!response.ok) throw Object.assign(new Refused(response.status, body), { token: shown });
    noteReachable();
    return body;
  }

  class Moot extends Error {}

  // What a failed call says, in words for the panel that asked.
  function why(error) {
    if (error instanceof Unreachable) return "The analytics service cannot be reached.";
    if (error instanceof Refused) {
      if (error.status === 401) return "The stats token was refused.";
      if (error.reason === "query timeout") {
        return "This query took longer than the service allows (PRISME_STATS_TIMEOUT). " +
          "Try a shorter period or fewer filters.";
      }
      if (error.reason === "store unavailable") return "The store is not answering: " + error.message;
      if (error.status === 0) return "The service gave no answer: " + error.message;
      return `The service refused this query (${error.status}): ${error.message}`;
    }
    return "Something went wrong: " + error;
  }

  function failed(error) {
    if (error instanceof Moot) return true;
    if (error instanceof Refused && error.status === 401) {
      // Only the token in use is wrong: an answer to one replaced since says nothing.
      if (error.token === token) askForToken("The stats token was refused: enter the right one.");
      return true;
    }
    if (error instanceof Unreachable) noteUnreachable();
    return false;
  }

  function noteUnreachable() {
    unreachable = true;
    showAlert("The analytics service cannot be reached at " + location.origin +
      ". Is it running? Trying again every few seconds.");
  }

  function noteReachable() {
    if (!unreachable) return;
    unreachable = false;
    showAlert("");
    load();
  }

  function showAlert(text) {
    $("alert").textContent = text;
    $("alert").hidden = !text;
  }

  // ---- the token ----------------------------------------------------------------------

  function takeToken() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const given = fragment.get("token");
    if (given) {
      sessionStorage.setItem(TOKEN_KEY, given);
      fragment.delete("token");
      const rest = fragment.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    }
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function askForToken(message) {
    generation += 1;
    liveRuns += 1;
    clearTimeout(liveTimer);
    sessionStorage.removeItem(TOKEN_KEY);
    token = "";
    showAlert(message || "");
    $("main").hidden = true;
    $("controls").hidden = true;
    $("live").hidden = true;
    $("token-form").hidden = false;
    $("token").value = "";
    $("token").focus();
  }

  // ---- the period ---------------------------------------------------------------------

  const startOfDay = (date) => new Date(date.getFullYear(), date.getMonth(), date.getDate());
  const addDays = (date, days) =>
    new Date(date.getFullYear(), date.getMonth(), date.getDate() + days,
      date.getHours(), date.getMinutes(), date.getSeconds(), date.getMilliseconds());
  const dateInput = (date) =>
    `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${String(date.getDate()).padStart(2, "0")}`;
  const fromDateInput = (text) => {
    const [y, m, d] = text.split("-").map(Number);
    return new Date(y, m - 1, d);
  };

  // The range [start, end] and the previous one of the same length, in the browser's zone.
  function range() {
    const now = new Date();
    let start = addDays(startOfDay(now), -6);
    let end = now;
    let days = 7;
    if (state.period === "today") {
      start = startOfDay(now);
      days = 1;
    } else if (state.period === "24h") {
      start = new Date(now.getTime() - DAY_MS);
      days = 1;
    } else if (state.period === "30d") {
      start = addDays(startOfDay(now), -29);
      days = 30;
    } else if (state.period === "custom" && state.from && state.to) {
      start = fromDateInput(state.from);
      const after = addDays(fromDateInput(state.to), 1);
      end = new Date(Math.min(after.getTime() - 1, now.getTime()));
      days = Math.max(1, Math.round((after - start) / DAY_MS));
    }
    const previous = { start: addDays(start, -days), end: addDays(end, -days) };
    if (state.period === "24h") {
      previous.start = new Date(start - DAY_MS);
      previous.end = new Date(end - DAY_MS);
    }
    const span = end - start;
    const interval = span <= 2 * DAY_MS ? "hour" : span <= 92 * DAY_MS ? "day" : span <= 731 * DAY_MS ? "week" : "month";
    return { start, end, previous, interval };
  }

  // The bucket starts the API would give for `interval` in this zone (it skips empty ones).
  function buckets(start, end, interval) {
    let at = new Date(start);
    if (interval === "hour") at = new Date(at.getFullYear(), at.getMonth(), at.getDate(), at.getHours());
    else if (interval === "day") at = startOfDay(at);
    else if (interval === "week") at = addDays(startOfDay(at), -at.getDay()); // weeks start on Sunday
    else at = new Date(at.getFullYear(), at.getMonth(), 1);
    const found = [];
    while (at <= end && found.length < 2000) {
      found.push(at.getTime());
      if (interval === "hour") at = new Date(at.getTime() + 3600000);
      else if (interval === "day") at = addDays(at, 1);
      else if (interval === "week") at = addDays(at, 7);
      else at = new Date(at.getFullYear(), at.getMonth() + 1, 1);
    }
    return found;
  }

  function params(start, end, extra = {}) {
    const given = { from: start.toISOString(), to: end.toISOString() };
    if (state.domain) given.domain = state.domain;
    for (const [name, value] of filterParams()) given[name] = value;
    return { ...given, ...extra };
  }

  function filterParams() {
    const by = new Map();
    for (const { name, value } of state.filters) by.set(name, [...(by.get(name) || []), value]);
    return [...by].map(([name, values]) => [name, values.join(",")]);
  }

  // ---- the page's state in its address (bookmarkable; the token never is) -------------

  function readAddress() {
    const given = new URLSearchParams(location.search);
    state.domain = given.get("domain") || "";
    state.period = given.get("period") || "7d";
    state.from = given.get("from") || "";
    state.to = given.get("to") || "";
    state.filters = [];
    for (const name of Object.keys(FILTER_NAMES)) {
      for (const value of given.getAll(name)) state.filters.push({ name, value });
    }
  }

  function writeAddress() {
    const kept = new URLSearchParams();
    if (state.domain) kept.set("domain", state.domain);
    if (state.period !== "7d") kept.set("period", state.period);
    if (state.period === "custom") {
      kept.set("from", state.from);
      kept.set("to", state.to);
    }
    for (const { name, value } of state.filters) kept.append(name, value);
    const query = kept.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
  }

  // ---- drawing ------------------------------------------------------------------------

  function element(tag, attributes = {}, ...children) {
    const made = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "text") made.textContent = value;
      else made.setAttribute(name, value);
    }
    made.append(...children);
    return made;
  }

  const FIGURES = [
    { key: "visitors", label: "Visitors", show: (v) => number.format(v) },
    { key: "sessions", label: "Sessions", show: (v) => number.format(v) },
    { key: "pageviews", label: "Page views", show: (v) => number.format(v) },
    { key: "bounceRate", label: "Bounce rate", show: (v) => percent.format(v), points: true, lowerIsBetter: true },
    { key: "sessionDuration", label: "Session duration", show: seconds },
    { key: "meanSeconds", label: "Time on page", show: seconds, engagement: true },
    { key: "meanScrollDepth", label: "Scroll depth", show: (v) => percent.format(v / 100), points: true, scale: 0.01, engagement: true },
  ];

  function seconds(value) {
    const whole = Math.round(value);
    if (whole < 60) return `${whole} s`;
    const minutes = Math.floor(whole / 60);
    if (minutes < 60) return `${minutes} min ${String(whole % 60).padStart(2, "0")} s`;
    return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
  }

  function change(figure, now, before) {
    if (before === undefined || before === null) return { text: "", trend: "" };
    if (figure.points) {
      const delta = (now - before) * (figure.scale || 1) * 100;
      const shown = Math.abs(delta).toFixed(1);
      if (Math.abs(delta) < 0.05) return { text: "no change from the previous period", trend: "" };
      const better = (delta > 0) !== !!figure.lowerIsBetter;
      return { text: `${delta > 0 ? "▲ +" : "▼ −"}${shown} pts from the previous period`, trend: better ? "better" : "worse" };
    }
    if (before === 0) return { text: now === 0 ? "no change from the previous period" : "new in this period", trend: now ? "better" : "" };
    const ratio = (now - before) / before;
    if (Math.abs(ratio) < 0.0005) return { text: "no change from the previous period", trend: "" };
    return {
      text: `${ratio > 0 ? "▲ +" : "▼ −"}${percent.format(Math.abs(ratio))} from the previous period`,
      trend: ratio > 0 ? "better" : "worse",
    };
  }

  // The headline figures as far as they are known: `shown` has the range's figures and the
  // previous period's (`now`, `before`), and engagement's (`read`, `readBefore`), each
  // null until it comes; `failed` and `readFailed` say why one did not.
  function drawFigures(shown) {
    const box = $("figures");
    box.replaceChildren();
    for (const figure of FIGURES) {
      const [now, before, failure] = figure.engagement
        ? [shown.read, shown.readBefore, shown.readFailed]
        : [shown.now, shown.before, shown.failed];
      const value = now ? now[figure.key] || 0 : null;
      const compared = now && before ? change(figure, value, before[figure.key] || 0) : { text: "", trend: "" };
      const note = failure ? element("span", { class: "change state error", text: failure }) : element("span", { class: "change " + compared.trend, text: compared.text });
      box.append(element("div", { class: "figure", "data-figure": figure.key, "aria-busy": String(!now && !failure) },
        element("dt", { text: figure.label }),
        element("dd", {},
          element("span", { class: "value", "data-value": value === null ? "" : String(value), text: value === null ? (failure ? "–" : "…") : figure.show(value) }),
          note)));
    }
  }

  function drawChart(times, visitors, views) {
    const box = $("chart");
    const rows = $("chart-table").tBodies[0];
    rows.replaceChildren(...times.map((t, i) => element("tr", {},
      element("td", { text: new Date(t).toLocaleString() }),
      element("td", { class: "n", text: number.format(visitors[i]) }),
      element("td", { class: "n", text: number.format(views[i]) }))));
    const total = (list) => list.reduce((a, b) => a + b, 0);
    box.setAttribute("aria-label", `Visitors and page views over time: ${times.length} buckets, ` +
      `${number.format(total(views))} page views in all. The table below has every value.`);
    const data = [times.map((t) => t / 1000), visitors, views];
    if (chart) {
      chart.setData(data);
      return;
    }
    if (typeof uPlot !== "function") {
      chartState("The chart library did not load.", true);
      return;
    }
    box.replaceChildren();
    chart = new uPlot({
      width: Math.max(200, box.clientWidth),
      height: 260,
      series: [
        {},
        { label: "Visitors", stroke: "#0b57d0", width: 2, fill: "rgba(11,87,208,0.08)" },
        { label: "Page views", stroke: "#8a4b00", width: 2 },
      ],
      axes: [{}, { size: 50 }],
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    }, data, box);
    new ResizeObserver(() => chart && chart.setSize({ width: Math.max(200, box.clientWidth), height: 260 }))
      .observe(box);
  }

  function chartState(text, error) {
    $("chart-state").textContent = text;
    $("chart-state").className = "state" + (error ? " error" : "");
    $("chart-state").hidden = !text;
  }

  function panel(list) {
    const id = "panel-" + list.route;
    let section = $(id);
    if (!section) {
      section = element("section", { class: "panel", id, "aria-labelledby": id + "-title", "aria-busy": "true" },
        element("h2", { id: id + "-title", text: list.title }),
        element("p", { class: "state", text: "Loading…" }));
      $("lists").append(section);
    }
    return section;
  }

  function drawList(list, keys, values, whole) {
    const section = panel(list);
    section.setAttribute("aria-busy", "false");
    section.hidden = !!list.optional && keys.length === 0;
    const title = section.querySelector("h2");
    if (!keys.length) {
      section.replaceChildren(title, element("p", { class: "state", text: "Nothing in this period." }));
      return;
    }
    const unit = UNITS[list.unit || "sessions"];
    const body = keys.slice(0, ROWS).map((key, i) => {
      const share = whole ? values[i] / whole : 0;
      const bar = element("span", { class: "share-bar", "aria-hidden": "true" });
      bar.style.width = `${Math.min(100, share * 100)}%`;
      const label = key === "" ? "(none)" : key;
      const cell = list.filter && key !== ""
        ? element("button", { type: "button", class: "row-filter", "data-filter": list.filter, "data-value": key,
            "aria-label": `Filter by ${FILTER_NAMES[list.filter].toLowerCase()}: ${label}`, text: label })
        : element("span", { text: label });
      return element("tr", { "data-key": key },
        element("td", { class: "key" }, bar, cell),
        element("td", { class: "n", "data-value": String(values[i]), text: number.format(values[i]) }),
        element("td", { class: "n", text: whole ? percent.format(share) : "" }));
    });
    const table = element("table", {},
      element("thead", {}, element("tr", {},
        element("th", { scope: "col", text: list.column }),
        element("th", { scope: "col", class: "n", text: unit }),
        element("th", { scope: "col", class: "n", text: "Share" }))),
      element("tbody", {}, ...body));
    section.replaceChildren(title, table);
  }

  function listFailed(list, error) {
    const section = panel(list);
    section.hidden = false;
    section.setAttribute("aria-busy", "false");
    section.replaceChildren(section.querySelector("h2"), element("p", { class: "state error", text: why(error) }));
  }

  function drawEngagement(answer) {
    const list = { route: "time-on-page", title: "How pages were read" };
    const section = panel(list);
    section.setAttribute("aria-busy", "false");
    const title = section.querySelector("h2");
    if (!answer.keys.length) {
      section.replaceChildren(title, element("p", { class: "state", text: "No engagement reports in this period." }));
      return;
    }
    const rows = answer.keys.map((key, i) => {
      const page = answer.pages[i] || {};
      return element("tr", { "data-key": key },
        element("td", { class: "key" }, element("span", { text: key })),
        element("td", { class: "n", "data-value": String(page.meanSeconds || 0), text: seconds(page.meanSeconds || 0) }),
        element("td", { class: "n", text: percent.format((page.meanScrollDepth || 0) / 100) }),
        element("td", { class: "n", text: percent.format(page.reached100 || 0) }));
    });
    section.replaceChildren(title, element("table", {},
      element("thead", {}, element("tr", {},
        element("th", { scope: "col", text: "Page" }),
        element("th", { scope: "col", class: "n", text: "Time on page" }),
        element("th", { scope: "col", class: "n", text: "Scroll depth" }),
        element("th", { scope: "col", class: "n", text: "Read to end" }))),
      element("tbody", {}, ...rows)));
  }

  function drawFilters() {
    const box = $("filters");
    box.replaceChildren(...state.filters.map((filter, i) => {
      const name = FILTER_NAMES[filter.name] || filter.name;
      const remove = element("button", { type: "button", class: "chip", "data-filter": filter.name,
        "data-value": filter.value, "aria-label": `Remove the filter ${name}: ${filter.value}` },
        `${name}: ${filter.value}`, element("span", { "aria-hidden": "true", text: "×" }));
      remove.addEventListener("click", () => {
        state.filters.splice(i, 1);
        changed();
        $("period").focus();
      });
      return element("li", {}, remove);
    }));
    $("filters-box").hidden = state.filters.length === 0;
  }

  // ---- loading --------------------------------------------------------------------------

  async function load() {
    generation += 1;
    const mine = generation;
    const { start, end, previous, interval } = range();
    const when = (d) => d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    $("period-text").textContent = `${when(start)} to ${when(end)} (${ZONE}), compared with ` +
      `${when(previous.start)} to ${when(previous.end)}`;
    drawFilters();
    document.body.dataset.loaded = "false";
    for (const list of LISTS) {
      const section = panel(list);
      section.setAttribute("aria-busy", "true");
    }
    panel({ route: "time-on-page", title: "How pages were read" }).setAttribute("aria-busy", "true");
    chartState("Loading…", false);
    const series = { interval, tz: ZONE };
    const reading = (answer) => ({ meanSeconds: answer.overall.meanSeconds, meanScrollDepth: answer.overall.meanScrollDepth });
    const shown = { now: null, before: null, read: null, readBefore: null, failed: "", readFailed: "" };
    drawFigures(shown);
    // In the queue's order: the range's figures and chart first, then the lists (the session
    // lists reuse the pass the figures made), the previous period, and how pages were read,
    // which costs most.
    const counted = ask("visitors", params(start, end, { ...series, totals: "true" }), mine);
    const views = ask("pageviews", params(start, end, series), mine);
    const ofSessions = LISTS.filter((list) => !list.unit);
    const together = askTogether(ofSessions.map((list) => [list.route, params(start, end, { limit: String(ROWS) })]), mine);
    const listed = LISTS.map((list) => list.unit
      ? ask(list.route, params(start, end, { limit: list.unit === "events" ? "1000" : String(ROWS) }), mine)
      : together[ofSessions.indexOf(list)]);
    const before = ask("top-pages", params(previous.start, previous.end, { limit: "0", totals: "true" }), mine);
    const read = ask("time-on-page", params(start, end, { limit: String(ROWS) }), mine);
    const readBefore = ask("time-on-page", params(previous.start, previous.end, { limit: "0" }), mine);

    const current = (then) => (answer) => mine === generation && then(answer);
    const missed = (then) => (error) => !failed(error) && mine === generation && then(error);
    const jobs = [
      Promise.all([counted, before]).then(current(([now, earlier]) => {
        Object.assign(shown, { now: now.totals, before: earlier.totals });
        drawFigures(shown);
      }), missed((error) => {
        shown.failed = why(error);
        drawFigures(shown);
      })),
      Promise.all([counted, views]).then(current(([now, viewed]) => {
        const times = [...new Set([...buckets(start, end, interval), ...now.keys, ...viewed.keys])].sort((a, b) => a - b);
        const of = (answer) => new Map(answer.keys.map((k, i) => [k, answer.values[i]]));
        const seen = of(now);
        const views = of(viewed);
        drawChart(times, times.map((t) => seen.get(t) || 0), times.map((t) => views.get(t) || 0));
        chartState("", false);
      }), missed((error) => chartState("The chart could not be drawn: " + why(error), true))),
      Promise.all([read, readBefore]).then(current(([now, earlier]) => {
        Object.assign(shown, { read: reading(now), readBefore: reading(earlier) });
        drawFigures(shown);
        drawEngagement(now);
      }), missed((error) => {
        shown.readFailed = why(error);
        drawFigures(shown);
        listFailed({ route: "time-on-page", title: "How pages were read" }, error);
      })),
      // The lists' shares are of the range's sessions and page views, counted once.
      ...LISTS.map((list, i) => Promise.all([listed[i], counted]).then(current(([answer, now]) => {
        const whole = list.unit === "events"
          ? answer.values.reduce((a, b) => a + b, 0)
          : (now.totals || {})[list.unit || "sessions"] || 0;
        drawList(list, answer.keys, answer.values, whole);
      }), missed((error) => listFailed(list, error)))),
    ];
    await Promise.all(jobs);
    if (mine !== generation) return;
    await domains(start, end);
    if (mine === generation) document.body.dataset.loaded = "true";
  }

  // The live visitors, every few seconds while the page is visible (one loop at a time).
  async function live() {
    clearTimeout(liveTimer);
    const run = ++liveRuns;
    let took = 0;
    try {
      const last = params(new Date(Date.now() - 15 * 60000), new Date(), { totals: "true" });
      const answer = await queued(async () => { // in turn: it must not slow the others
        const started = performance.now();
        try {
          return await call("live-visitors", last, null);
        } finally {
          took = performance.now() - started;
        }
      });
      const count = (answer.totals || {}).liveVisitors || 0;
      $("live-count").textContent = number.format(count);
      $("live-count").dataset.value = String(count);
    } catch (error) {
      if (error instanceof Refused && error.status === 401) return failed(error);
      failed(error);
      $("live-count").textContent = "–";
    }
    // Every few seconds, or less often where each count takes long (a slow store's share).
    const every = Math.max(LIVE_EVERY_MS, 4 * took);
    if (run === liveRuns && token && !document.hidden) liveTimer = setTimeout(live, every);
  }

  // The sites of the period, once its panels are drawn: with no site and no filter chosen,
  // the pass that counted the lists answers it too.
  let domainsListed = false;
  async function domains(start, end) {
    if (domainsListed) return;
    domainsListed = true;
    try {
      const range = { from: start.toISOString(), to: end.toISOString(), limit: "100" };
      const answer = await ask("top-domains", range, null);
      const select = $("domain");
      const known = new Set([...select.options].map((o) => o.value));
      for (const name of [...answer.keys, state.domain].filter((n) => n && !known.has(n))) {
        select.append(element("option", { value: name, text: name }));
        known.add(name);
      }
      select.value = state.domain;
    } catch (error) {
      domainsListed = false;
      failed(error);
    }
  }

  function changed() {
    writeAddress();
    load();
    live();
  }

  function open() {
    $("token-form").hidden = true;
    $("controls").hidden = false;
    $("main").hidden = false;
    $("live").hidden = false;
    $("period").value = state.period;
    $("custom").hidden = state.period !== "custom";
    $("custom-from").value = state.from;
    $("custom-to").value = state.to;
    changed();
  }

  function start() {
    readAddress();
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      token = $("token").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      showAlert("");
      open();
    });
    $("controls").addEventListener("submit", (event) => {
      event.preventDefault();
      if (!$("custom-from").value || !$("custom-to").value) return;
      state.from = $("custom-from").value;
      state.to = $("custom-to").value;
      if (state.from > state.to) [state.from, state.to] = [state.to, state.from];
      changed();
    });
    $("domain").addEventListener("change", () => {
      state.domain = $("domain").value;
      changed();
    });
    $("period").addEventListener("change", () => {
      state.period = $("period").value;
      $("custom").hidden = state.period !== "custom";
      if (state.period === "custom") {
        const today = new Date();
        $("custom-to").value = state.to || dateInput(today);
        $("custom-from").value = state.from || dateInput(addDays(today, -6));
        $("custom-from").focus();
        return;
      }
      changed();
    });
    $("lists").addEventListener("click", (event) => {
      const row = event.target.closest("button.row-filter");
      if (!row) return;
      const filter = { name: row.dataset.filter, value: row.dataset.value };
      if (!state.filters.some((f) => f.name === filter.name && f.value === filter.value)) state.filters.push(filter);
      changed();
      $("filters").lastElementChild.querySelector("button").focus(); // the row is redrawn: focus its chip
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && token) live();
    });
    token = takeToken();
    if (!token) askForToken("");
    else open();
  }

  start();
})();
