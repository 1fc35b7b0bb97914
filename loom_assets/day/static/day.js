// Loom · your day: the timeline, map, plots and search of one day (loom_assets/day/app.py serves
// the data; vis-timeline, Leaflet and ECharts are vendored under static/vendor).
"use strict";

const config = JSON.parse(document.getElementById("config").textContent);
const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
const $ = (id) => document.getElementById(id);
const localDate = (d) => new Intl.DateTimeFormat("en-CA", { timeZone: tz }).format(d);  // YYYY-MM-DD
const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
// Which lane holds the rows a search hit names (docs/day.md#search).
const LANE_OF_FLOW = { audio: "speech", screenshot_ocr: "screens", calendar: "calendar", email: "email",
                       hackernews: "hackernews" };

const params = new URLSearchParams(location.search);
const state = { date: params.get("date") || localDate(new Date()), device: params.get("device") || "" };
const items = new Map();
// The libraries load after this script (so the data is asked for first); they are there once
// the document has been parsed.
const libraries = new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve));
let timeline, map, layers, plots = {};

function query(extra = {}) {
  const q = new URLSearchParams({ date: state.date, tz, ...extra });
  if (state.device) q.append("device", state.device);
  return q;
}

async function getJSON(path, extra) {
  const response = await fetch(`${path}?${query(extra)}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

function dayBounds() {
  const start = new Date(`${state.date}T00:00`);
  const end = new Date(start);
  end.setDate(end.getDate() + 1);
  return [start, end];
}

// -- timeline --------------------------------------------------------------------------------
function itemElement(item) {
  const box = document.createElement("div");
  box.className = "item";
  if (item.thumb) {
    const img = document.createElement("img");
    img.src = item.thumb;
    img.loading = "lazy";
    img.alt = "";
    box.append(img);
  }
  const label = document.createElement("span");
  label.textContent = item.content;  // text, never markup: OCR and mail hold anything
  box.append(label);
  return box;
}

function drawTimeline(data) {
  const [start, end] = dayBounds();
  const counts = {};
  data.items.forEach((i) => { counts[i.group] = (counts[i.group] || 0) + 1; });
  const groups = data.groups.map((g) => ({ id: g.id, content: `${g.content} · ${counts[g.id] || 0}`,
                                           className: counts[g.id] ? "lane" : "lane empty" }));
  items.clear();
  const shown = data.items.map((i) => {
    items.set(i.id, i);
    return { id: i.id, group: i.group, start: i.start, end: i.end || undefined, type: i.type,
             className: i.className, content: i.content, title: `${clock(i.start)} ${i.content}`, thumb: i.thumb };
  });
  if (!timeline) {
    timeline = new vis.Timeline($("timeline"), new vis.DataSet(shown), new vis.DataSet(groups), {
      stack: true, orientation: "top", zoomMin: 60 * 1000, margin: { item: 2 },
      template: (item) => itemElement(item), tooltip: { followMouse: true },
      groupOrder: (a, b) => data.groups.findIndex((g) => g.id === a.id) - data.groups.findIndex((g) => g.id === b.id),
    });
    timeline.on("select", ({ items: selected }) => showDetails(items.get(selected[0])));
  } else {
    timeline.setItems(new vis.DataSet(shown));
    timeline.setGroups(new vis.DataSet(groups));
  }
  timeline.setOptions({ min: new Date(start.getTime() - 3600e3), max: new Date(end.getTime() + 3600e3) });
  // The hours that hold something (a morning so far, an afternoon), else the whole day.
  const times = data.items.flatMap((i) => [Date.parse(i.start), Date.parse(i.end || i.start)]);
  const [first, last] = times.length ? [Math.min(...times), Math.max(...times)] : [start, end];
  const margin = Math.max((last - first) * 0.02, 15 * 60e3);
  timeline.setWindow(new Date(Math.max(first - margin, start)), new Date(Math.min(last + margin, end)), { animation: false });
}

function showDetails(item) {
  if (!item) { $("details").hidden = true; return; }
  $("details").hidden = false;
  $("details-title").textContent = item.content;
  $("details-when").textContent = item.end ? `${clock(item.start)} – ${clock(item.end)}` : clock(item.start);
  $("details-image").hidden = !item.thumb;
  if (item.thumb) $("details-image").src = item.thumb;
  const fields = $("details-fields");
  fields.replaceChildren();
  for (const [name, value] of Object.entries({ device: item.device, ...item.details })) {
    if (value === null || value === undefined || value === "") continue;
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = String(value);
    fields.append(dt, dd);
  }
  $("details-link").hidden = !item.link;
  if (item.link) $("details-link").href = item.link;
}

// -- map -------------------------------------------------------------------------------------
function drawMap(data) {
  if (!map) {
    map = L.map("map", { zoomSnap: 0.25 });
    // With no tile server (or none reachable) the track still draws, scaled, on the plain background.
    if (config.tileUrl) {
      L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: "© OpenStreetMap contributors" }).addTo(map);
    }
    layers = L.layerGroup().addTo(map);
  }
  layers.clearLayers();
  const bounds = [];
  const colours = ["#2563eb", "#db2777", "#059669", "#d97706"];
  Object.entries(data.paths).forEach(([device, points], n) => {
    const line = points.map(([lat, lon]) => [lat, lon]);
    bounds.push(...line);
    L.polyline(line, { color: colours[n % colours.length], weight: 3, className: "track" })
      .bindTooltip(device).addTo(layers);
  });
  for (const visit of data.visits) {
    bounds.push([visit.lat, visit.lon]);
    L.circleMarker([visit.lat, visit.lon], { radius: 7, className: "visit", color: "#111827", fillOpacity: 0.7 })
      .bindTooltip(`${visit.name} · ${clock(visit.start)}–${clock(visit.end)} (${visit.minutes} min)`)
      .addTo(layers);
  }
  $("map").classList.toggle("empty", bounds.length === 0);
  if (bounds.length) map.fitBounds(bounds, { padding: [20, 20] });
  else map.setView([0, 0], 1);
}

// -- plots -----------------------------------------------------------------------------------
function chart(id, option) {
  plots[id] = plots[id] || echarts.init($(id), null, { renderer: "svg" });
  plots[id].setOption({ animation: false, grid: { left: 90, right: 12, top: 8, bottom: 24 }, tooltip: {}, ...option },
                      true);
}

function bars(id, pairs, unit) {
  chart(id, {
    xAxis: { type: "value", name: unit, nameGap: 4 },
    yAxis: { type: "category", inverse: true, data: pairs.map((p) => p[0]) },
    series: [{ type: "bar", data: pairs.map((p) => p[1]) }],
  });
}

function drawPlots(data) {
  const [start, end] = dayBounds();
  chart("plot-battery", {
    grid: { left: 36, right: 12, top: 8, bottom: 24 },
    xAxis: { type: "time", min: start, max: end, axisLabel: { formatter: "{HH}:{mm}" } },
    yAxis: { type: "value", min: 0, max: 100 },
    tooltip: { trigger: "axis" },
    series: Object.entries(data.battery).map(([device, points]) => ({ name: device, type: "line", showSymbol: false, data: points })),
  });
  bars("plot-apps", data.app_categories, "min");
  chart("plot-steps", {
    grid: { left: 48, right: 12, top: 8, bottom: 24 },
    xAxis: { type: "category", data: data.steps_per_hour.map((p) => p[0]) },
    yAxis: { type: "value" },
    series: [{ type: "bar", data: data.steps_per_hour.map((p) => p[1]) }],
  });
  bars("plot-places", data.places, "min");
}

// -- loading, search -------------------------------------------------------------------------
async function load() {
  document.body.dataset.ready = "false";
  $("status").textContent = "Loading…";
  $("date").value = state.date;
  history.replaceState(null, "", `?${query()}`);
  try {
    const data = Promise.all([getJSON("api/timeline"), getJSON("api/map"), getJSON("api/plots")]);
    await libraries;
    const [day, track, summary] = await data;
    performance.mark("data");
    drawTimeline(day);
    performance.mark("timeline");
    drawMap(track);
    performance.mark("map");
    drawPlots(summary);
    performance.mark("plots");
    $("status").textContent = day.items.length ? "" : "Nothing recorded on this day (yet).";
  } catch (error) {
    $("status").textContent = error.message;
  }
  // The first full render's time since navigation (bench/day.py reads it).
  document.body.dataset.renderMs ||= String(Math.round(performance.now()));
  document.body.dataset.ready = "true";
}

async function loadDevices() {
  const { devices } = await getJSON("api/devices");
  const select = $("device");
  for (const device of devices) select.append(new Option(device, device, false, device === state.device));
}

async function goTo(hit) {
  const at = new Date(hit.recorded_at);
  if (localDate(at) !== state.date) {
    state.date = localDate(at);
    await load();
  }
  timeline.setWindow(new Date(at.getTime() - 45 * 60e3), new Date(at.getTime() + 45 * 60e3), { animation: false });
  const lane = LANE_OF_FLOW[hit.flow];
  let nearest;
  for (const item of items.values()) {
    if (item.group !== lane) continue;
    const distance = Math.abs(new Date(item.start) - at);
    if (!nearest || distance < nearest.distance) nearest = { item, distance };
  }
  if (nearest) {
    timeline.setSelection([nearest.item.id]);
    showDetails(nearest.item);
  }
  document.body.dataset.focus = at.toISOString();
}

async function search(event) {
  event.preventDefault();
  const list = $("hits");
  list.replaceChildren();
  list.hidden = false;
  try {
    const { hits } = await getJSON("api/search", { q: $("query").value, scope: $("scope").value });
    if (!hits.length) list.append(Object.assign(document.createElement("li"), { textContent: "No matches." }));
    for (const hit of hits) {
      const li = document.createElement("li");
      li.className = "hit";
      const when = new Date(hit.recorded_at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
      li.append(Object.assign(document.createElement("strong"), { textContent: `${when} · ${hit.flow} · ${hit.title || ""}` }),
                Object.assign(document.createElement("p"), { textContent: hit.snippet }));
      li.addEventListener("click", () => { list.hidden = true; goTo(hit); });
      list.append(li);
    }
  } catch (error) {
    list.append(Object.assign(document.createElement("li"), { textContent: error.message }));
  }
}

function shiftDay(days) {
  const d = new Date(`${state.date}T12:00`);
  d.setDate(d.getDate() + days);
  state.date = localDate(d);
  load();
}

$("previous-day").addEventListener("click", () => shiftDay(-1));
$("next-day").addEventListener("click", () => shiftDay(1));
$("today").addEventListener("click", () => { state.date = localDate(new Date()); load(); });
$("date").addEventListener("change", (e) => { if (e.target.value) { state.date = e.target.value; load(); } });
$("device").addEventListener("change", (e) => { state.device = e.target.value; load(); });
$("search").addEventListener("submit", search);
$("close-details").addEventListener("click", () => { $("details").hidden = true; timeline.setSelection([]); });
$("dagster").href = config.dagsterUrl;
window.loomDay = { get timeline() { return timeline; }, get map() { return map; }, goTo };
loadDevices().catch((error) => { $("status").textContent = error.message; });
load();
