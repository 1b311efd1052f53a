// The dashboard: reads the JSON admin API of the controller that served the page
// and renders it. Every value from the API goes into the page as text
// (textContent or DOM nodes), never as HTML.
"use strict";

const CLUSTER_EVERY_MS = 2000;
const BOOKS_EVERY_MS = 10000;
const BOOKS_PER_PAGE = 200;

const $ = (id) => document.getElementById(id);

/// An element with `text` as its content and the given class.
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function yesNo(v) {
  return el("span", v ? "yes" : "no", v ? "yes" : "no");
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = Number(n) || 0;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
}

function age(ms) {
  if (ms === null || ms === undefined) return "never";
  if (ms < 1000) return ms + " ms ago";
  const s = Math.round(ms / 1000);
  if (s < 120) return s + " s ago";
  const m = Math.round(s / 60);
  if (m < 120) return m + " min ago";
  return Math.round(m / 60) + " h ago";
}

function duration(ms) {
  if (ms < 1000) return ms + " ms";
  return (ms / 1000).toFixed(1) + " s";
}

/// Replaces a table body's rows with one row per item, built by `cells(item, tr)`.
function fillRows(tableId, items, cells) {
  const body = $(tableId).tBodies[0];
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    for (const c of cells(item, tr)) {
      const td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c);
      else td.textContent = c === undefined || c === null ? "" : String(c);
      tr.appendChild(td);
    }
    return tr;
  });
  body.replaceChildren(...rows);
}

function card(id, value, alert) {
  const v = $(id);
  v.textContent = String(value);
  v.parentElement.classList.toggle("alert", Boolean(alert));
}

function usage(used, capacity) {
  const wrap = el("span");
  wrap.appendChild(el("span", bytes(used)));
  const bar = el("span", null, "bar");
  const fill = document.createElement("span");
  const pct = capacity > 0 ? Math.min(100, (100 * used) / capacity) : 0;
  fill.style.width = pct.toFixed(1) + "%";
  bar.appendChild(fill);
  bar.title = pct.toFixed(1) + "% of " + bytes(capacity);
  wrap.appendChild(bar);
  return wrap;
}

function renderCluster(c) {
  const box = $("verdict-box");
  box.dataset.verdict = c.verdict;
  $("verdict").textContent = c.verdict;
  $("reasons").replaceChildren(...c.reasons.map((r) => el("li", r)));
  $("partial").hidden = !c.partial;
  $("self").textContent =
    "controller " + c.controller.node_id + " · v" + c.controller.version +
    " · up " + duration(c.controller.uptime_ms);

  card("files", c.files);
  card("chunks", c.chunks);
  card("under-replicated", c.under_replicated_chunks, c.under_replicated_chunks > 0);
  card("lost-chunks", c.lost_chunks, c.lost_chunks > 0);
  card("repair-backlog", c.repair_backlog, c.repair_backlog > 0);
  card("gc-waiting", c.gc.waiting ? "yes (" + c.gc.waits.length + ")" : "no", c.gc.waiting);
  card("search-progress", c.search.indexed_books + " / " + c.search.pending_books,
    c.search.pending_books > 0);
  card("clock-skew", c.clock_skew_ms + " ms" +
    (c.records_held_clock_ahead > 0 ? " · " + c.records_held_clock_ahead + " held" : ""),
    c.records_held_clock_ahead > 0);

  $("converged").textContent = c.converged ? "· converged" : "· not converged";
  fillRows("controllers", c.controllers, (k, tr) => {
    tr.dataset.nodeId = k.node_id;
    tr.dataset.reachable = String(k.reachable);
    if (k.is_self) tr.classList.add("self");
    const digest = el("span", k.state_digest ? k.state_digest.slice(0, 12) : "–", "mono");
    if (k.state_digest) digest.title = k.state_digest;
    return [
      k.node_id, k.grpc_address, k.http_address, yesNo(k.reachable), digest,
      yesNo(k.converged), k.is_self ? "–" : age(k.last_exchange_ms_ago),
    ];
  });

  fillRows("chunkservers", c.chunkservers, (s, tr) => {
    tr.dataset.nodeId = s.node_id;
    tr.dataset.healthy = String(s.healthy);
    return [
      s.node_id, s.grpc_address, yesNo(s.healthy), yesNo(s.answered),
      age(s.last_heartbeat_ms_ago), usage(s.used_bytes, s.capacity_bytes),
      bytes(s.free_bytes), s.chunk_count,
    ];
  });

  $("gc-none").hidden = c.gc.waiting;
  $("gc-waits").hidden = !c.gc.waiting;
  fillRows("gc-waits", c.gc.waits, (w) => [
    w.collector, w.node_id, w.reason, age(Date.now() - w.since_ms),
  ]);

  fillRows("workers", c.workers, (w, tr) => {
    tr.dataset.state = w.state;
    return [
      w.name, w.state, w.units, w.errors,
      w.last_error ? w.last_error + " (" + age(w.last_error_ms_ago) + ")" : "–",
      duration(w.unit_ms),
    ];
  });
}

function download(path, label) {
  const a = el("a", label);
  a.href = path;
  a.setAttribute("download", "");
  return a;
}

function renderBooks(page) {
  fillRows("books", page.files, (f, tr) => {
    tr.dataset.owner = f.owner;
    tr.dataset.name = f.name;
    return [
      f.name, f.owner, bytes(f.size), new Date(f.created_at_ms).toLocaleString(),
      download(f.download, "download"),
    ];
  });
  $("books-status").textContent =
    page.files.length === 0 ? "No public books yet." :
    page.next_page_token ? "The first " + page.files.length + " public books." :
    page.files.length + " public book" + (page.files.length === 1 ? "" : "s") + ".";
}

/// The snippet with each match (between U+0002 and U+0003) in a <mark>, as nodes.
function snippet(text) {
  const p = el("p", null, "snippet");
  let rest = String(text);
  for (;;) {
    const open = rest.indexOf("\u0002");
    if (open < 0) break;
    const close = rest.indexOf("\u0003", open + 1);
    if (close < 0) break;
    p.appendChild(document.createTextNode(rest.slice(0, open)));
    p.appendChild(el("mark", rest.slice(open + 1, close)));
    rest = rest.slice(close + 1);
  }
  p.appendChild(document.createTextNode(rest.replace(/[\u0002\u0003]/g, "")));
  return p;
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store", headers: { accept: "application/json" } });
  let body = null;
  try {
    body = await r.json();
  } catch (_) {
    // not JSON: reported below
  }
  if (!r.ok) throw new Error((body && body.error) || "HTTP " + r.status);
  if (body === null) throw new Error("the answer is not JSON");
  return body;
}

async function search(ev) {
  if (ev) ev.preventDefault();
  const q = $("search-q").value.trim();
  if (!q) return;
  // The address names the search, so it can be shared or reloaded.
  history.replaceState(null, "", "?q=" + encodeURIComponent(q));
  const status = $("search-status");
  const list = $("search-results");
  status.textContent = "searching…";
  try {
    const r = await getJson("/api/v1/search?q=" + encodeURIComponent(q));
    status.textContent = r.hits.length + " hit" + (r.hits.length === 1 ? "" : "s") +
      " among " + r.indexed_books + " indexed books" +
      (r.pending_books > 0 ? " (" + r.pending_books + " not indexed yet)" : "") + ".";
    list.replaceChildren(...r.hits.map((h) => {
      const li = document.createElement("li");
      const head = el("div");
      head.appendChild(el("strong", h.title || h.name));
      if (h.author) head.appendChild(document.createTextNode(" · " + h.author));
      head.appendChild(document.createTextNode(" · " + h.owner + "/" + h.name + " · "));
      head.appendChild(download(h.download, "download"));
      li.appendChild(head);
      li.appendChild(snippet(h.snippet));
      return li;
    }));
  } catch (e) {
    status.textContent = "search failed: " + e.message;
    list.replaceChildren();
  }
}

let lastOk = null;

function markReachable(ok, why) {
  $("offline").hidden = ok;
  document.body.dataset.reachable = String(ok);
  if (!ok) {
    $("offline").textContent = "cannot reach this controller (" + why + ")" +
      (lastOk ? "; the figures below are from " + lastOk.toLocaleTimeString() : "");
  }
}

async function refreshCluster() {
  try {
    renderCluster(await getJson("/api/v1/cluster"));
    lastOk = new Date();
    $("updated").textContent = "updated " + lastOk.toLocaleTimeString();
    markReachable(true);
  } catch (e) {
    markReachable(false, e.message);
  } finally {
    setTimeout(refreshCluster, CLUSTER_EVERY_MS);
  }
}

async function refreshBooks() {
  try {
    renderBooks(await getJson("/api/v1/files?limit=" + BOOKS_PER_PAGE));
  } catch (e) {
    $("books-status").textContent = "cannot list the public books: " + e.message;
  } finally {
    setTimeout(refreshBooks, BOOKS_EVERY_MS);
  }
}

$("search-form").addEventListener("submit", search);
const asked = new URLSearchParams(location.search).get("q");
if (asked) {
  $("search-q").value = asked;
  search();
}
refreshCluster();
refreshBooks();
