// tilewright's web page: upload with progress, live jobs (server-sent events), gallery, OpenSeadragon viewer.
// Every URL here is relative (no leading "/"): the page is served at the app's root ("PREFIX/" or
// "PREFIX/ui"), so the same page works with the app at the root of a host or under a proxy's path prefix.
"use strict";

const $ = (selector) => document.querySelector(selector);
const FINISHED = ["succeeded", "failed", "cancelled"];
const jobs = new Map();      // id -> job
const streams = new Map();   // id -> EventSource
let viewer = null;
let openImage = null;        // {id, job_id, tiles} of the image in the viewer

function authHeaders() {
  const token = $("#token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && (body.detail || body.error)) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function progressBar(fraction, state) {
  const pct = Math.round((fraction || 0) * 100);
  const bar = el("div", { class: `progress ${state === "succeeded" ? "done" : ""} ${state === "failed" ? "failed" : ""}`,
                          role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 },
                 el("div", { class: "bar", style: `width:${pct}%` }), el("span", { class: "label" }, `${pct} %`));
  return bar;
}

// -- upload ------------------------------------------------------------------------------------------
function upload(event) {
  event.preventDefault();
  const file = $("#file").files[0];
  if (!file) return;
  const collection = $("#collection").value.trim() || "default";
  // what was chosen, as chosen: recipe "" is a plain conversion to `kind` (not the server's upload recipe)
  const kind = $("#kind").value, recipe = $("#recipe").value;
  const params = new URLSearchParams({ collection, kind, recipe });
  const form = new FormData();
  form.append("collection", collection);
  form.append("file", file, file.name);
  const box = $("#upload-progress"), message = $("#upload-message"), button = $("#upload-button");
  box.hidden = false; box.className = "progress"; message.textContent = ""; message.className = "message";
  button.disabled = true;
  const setProgress = (fraction, text) => {
    box.querySelector(".bar").style.width = `${Math.round(fraction * 100)}%`;
    box.querySelector(".label").textContent = text;
  };
  setProgress(0, "0 %");
  const xhr = new XMLHttpRequest();   // fetch() has no upload progress; XHR does
  xhr.open("POST", `images?${params}`);
  for (const [key, value] of Object.entries(authHeaders())) xhr.setRequestHeader(key, value);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setProgress(e.loaded / e.total, `uploading ${Math.round(100 * e.loaded / e.total)} %`);
  };
  xhr.onload = () => {
    button.disabled = false;
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
    if (xhr.status >= 200 && xhr.status < 300 && body) {
      box.className = "progress done";
      setProgress(1, "uploaded");
      message.textContent = `${body.image.filename} uploaded to "${body.image.collection}"; job ${body.job.id.slice(0, 8)} ${jobWhat(body.job)}.`;
      trackJob(body.job);
      refreshCollections();
      refreshGallery();
    } else {
      box.className = "progress failed";
      message.className = "message error";
      message.textContent = `Upload refused: ${(body && (body.detail || body.error)) || xhr.status + " " + xhr.statusText}`;
    }
  };
  xhr.onerror = () => {
    button.disabled = false;
    box.className = "progress failed";
    message.className = "message error";
    message.textContent = "Upload failed: the server could not be reached.";
  };
  xhr.send(form);
}

// -- jobs ------------------------------------------------------------------------------------------
const KIND_NAMES = { dzi: "Deep Zoom", tiff: "a pyramidal TIFF", iiif: "IIIF tiles" };

function jobWhat(job) {   // what the job makes, in words: "converts it to IIIF tiles", "runs recipe default"
  const params = job.params || {};
  if (job.kind === "recipe") return `runs recipe ${params.recipe}`;
  if (job.kind === "convert") return `converts it to ${KIND_NAMES[params.kind || "dzi"] || params.kind}`;
  return `runs ${job.kind}`;
}

function madeLinks(job) {   // a succeeded job's outputs, by name, linked
  const outputs = job.outputs || {}, urls = outputs.urls || [];
  if (!urls.length) return el("span", {}, job.stage || "done");
  const box = el("span", { class: "made" }, "made: ");
  urls.forEach((url, i) => {
    // "/outputs/...": from the app's root, so relative to this page (which is served there, maybe under a prefix)
    let href = url.startsWith("/") ? url.slice(1) : url;
    if (outputs.kind === "iiif" && !href.endsWith(".json")) href += "/info.json";   // a IIIF output is its folder
    if (i) box.append(", ");
    box.append(el("a", { href, target: "_blank", rel: "noopener" }, decodeURIComponent(href.split("/").pop())));
  });
  return box;
}

function renderJobs() {
  const rows = $("#job-rows");
  rows.replaceChildren();
  const list = [...jobs.values()].sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
  if (!list.length) rows.append(el("tr", { class: "empty" }, el("td", { colspan: 6 }, "no jobs yet")));
  for (const job of list) {
    const what = (job.params && (job.params.input || "").split("/").pop()) || "";
    const actions = el("td", {});
    if (!FINISHED.includes(job.state)) {
      actions.append(el("button", { class: "secondary", "data-action": "cancel", onclick: () => act(job.id, "cancel") },
                        "Cancel"));
    } else if (job.state !== "succeeded" && job.retryable !== false) {   // a bad input: retrying cannot help
      actions.append(el("button", { class: "secondary", "data-action": "retry", onclick: () => act(job.id, "retry") },
                        "Retry"));
    }
    const detail = job.error
      ? el("span", { class: "error" }, job.error)
      : job.state === "succeeded" ? madeLinks(job)
      : el("span", {}, job.stage || (job.state === "queued" ? "waiting for a worker" : ""));
    rows.append(el("tr", { "data-job": job.id, "data-state": job.state },
      el("td", {}, el("code", { title: job.id }, job.id.slice(0, 8)), el("br"), el("small", { class: "muted" }, what)),
      el("td", {}, `${job.kind}${job.params && (job.params.kind || job.params.recipe) ? " → " + (job.params.kind || job.params.recipe) : ""}`),
      el("td", { class: `state state-${job.state}` }, job.state),
      el("td", {}, progressBar(job.state === "succeeded" ? 1 : job.progress, job.state)),
      el("td", {}, detail),
      actions));
  }
  const live = [...streams.keys()].length;
  $("#jobs-live").textContent = live ? `live: following ${live} job${live > 1 ? "s" : ""}` : "";
}

function trackJob(job) {
  jobs.set(job.id, job);
  renderJobs();
  if (FINISHED.includes(job.state) || streams.has(job.id) || streams.size >= 20) return;
  const source = new EventSource(`jobs/${job.id}/events`);
  streams.set(job.id, source);
  const update = (event) => {
    const data = JSON.parse(event.data);
    const before = jobs.get(data.id);
    jobs.set(data.id, data);
    renderJobs();
    if (FINISHED.includes(data.state) && !(before && FINISHED.includes(before.state))) jobFinished(data);
  };
  source.addEventListener("progress", update);
  source.addEventListener("end", (event) => { update(event); source.close(); streams.delete(job.id); renderJobs(); });
  source.onerror = () => { source.close(); streams.delete(job.id); renderJobs(); };
}

function jobFinished(job) {
  refreshGallery();
  if (openImage && openImage.job_id === job.id && job.state === "succeeded") openViewer(openImage.id, true);
}

async function act(id, action) {
  try {
    const job = await api(`jobs/${id}/${action}`, { method: "POST" });
    jobs.set(job.id, job);
    trackJob(job);
  } catch (e) {
    alert(`${action} failed: ${e.message}`);
  }
}

async function refreshJobs() {
  try {
    for (const job of await api("jobs?limit=50")) {
      const known = jobs.get(job.id);
      if (!known || known.state !== job.state || known.progress !== job.progress) trackJob(job);
    }
  } catch (e) { /* the next poll tries again */ }
}

// -- gallery and viewer ------------------------------------------------------------------------------
async function refreshCollections() {
  try {
    const collections = await api("collections");
    const select = $("#gallery-collection"), chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "all collections"));
    $("#collection-list").replaceChildren();
    for (const c of collections) {
      select.append(el("option", { value: c.name }, `${c.name} (${c.images})`));
      $("#collection-list").append(el("option", { value: c.name }));
    }
    select.value = chosen;
  } catch (e) { /* keep what is shown */ }
}

async function refreshGallery() {
  const collection = $("#gallery-collection").value;
  let images = [];
  try { images = await api(`images?limit=200${collection ? "&collection=" + encodeURIComponent(collection) : ""}`); }
  catch (e) { return; }
  const box = $("#thumbs");
  box.replaceChildren();
  if (!images.length) box.append(el("p", { class: "muted" }, "no images yet"));
  for (const image of images) {
    box.append(el("figure", { class: "thumb", "data-image": image.id, onclick: () => openViewer(image.id) },
      el("img", { src: `images/${image.id}/thumbnail?size=166`, alt: image.filename, loading: "lazy" }),
      el("div", { class: "name" }, image.filename),
      el("div", { class: "collection" }, `${image.collection} · ${image.state || ""}`)));
  }
}

function metaList(pairs) {
  const dl = el("dl");
  for (const [key, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(el("dt", {}, key), el("dd", {}, String(value)));
  }
  return dl;
}

function tilesNote(info, record) {   // where the viewer's tiles come from, in words
  if (info.tiles === "prebuilt") return "pre-built pyramid";
  if (!FINISHED.includes(record.state)) return "dynamic tiles until its job has made the pyramid";
  // the job is over and made no Deep Zoom pyramid (a recipe that makes one for slides only, a TIFF or IIIF
  // output): this image is served dynamically, for good
  return "served dynamically: tiles are made on request from the upload (its job made no Deep Zoom pyramid)";
}

async function openViewer(id, keepView = false) {
  let info, record;
  try {
    [info, record] = await Promise.all([api(`images/${id}/info`), api(`images/${id}`)]);
  } catch (e) {
    alert(`Cannot open image: ${e.message}`);
    return;
  }
  openImage = { id, job_id: record.job_id, tiles: info.tiles };
  const section = $("#viewer-section");
  section.hidden = false;
  $("#viewer-title").textContent = `${record.filename} — ${tilesNote(info, record)}`;
  const meta = $("#meta");
  meta.replaceChildren(metaList([
    ["id", id], ["collection", record.collection], ["format", info.format], ["vendor", info.vendor],
    ["size", `${info.width} × ${info.height} px`], ["levels", info.levels.length],
    ["tile", `${info.tile_width} × ${info.tile_height}`],
    ["resolution", info.mpp_x ? `${info.mpp_x.toFixed(4)} × ${info.mpp_y.toFixed(4)} µm/px` : null],
    ["objective", info.objective_power ? `${info.objective_power}×` : null],
    ["tiles", info.tiles], ["state", record.state],
    ["Deep Zoom", info.dzi], ["IIIF", info.iiif],
  ]));
  for (const url of info.associated || []) {   // the server's links start with its root path: only the name is taken
    const name = url.split("/").pop();
    meta.append(el("figure", {}, el("img", { src: `images/${id}/associated/${name}`, alt: name, style: "max-width:100%" }),
                   el("figcaption", { class: "muted" }, name)));
  }
  const props = Object.entries(info.properties || {});
  if (props.length) meta.append(el("details", {}, el("summary", {}, `${props.length} properties`), metaList(props)));
  if (typeof OpenSeadragon === "undefined") {
    $("#viewer").replaceChildren(el("p", { class: "error" }, "OpenSeadragon is missing: run `make` on the server."));
    return;
  }
  const source = `images/${id}.dzi`;
  if (!viewer) {
    viewer = OpenSeadragon({ id: "viewer", prefixUrl: "vendor/openseadragon/images/", tileSources: source,
                             showNavigator: true, crossOriginPolicy: "Anonymous", maxZoomPixelRatio: 2 });
  } else {
    const center = keepView ? viewer.viewport.getCenter() : null, zoom = keepView ? viewer.viewport.getZoom() : null;
    viewer.open(source);
    if (keepView) viewer.addOnceHandler("open", () => { viewer.viewport.panTo(center, true); viewer.viewport.zoomTo(zoom, null, true); });
  }
  window.tilewrightViewer = viewer;
  section.scrollIntoView({ behavior: "instant", block: "start" });
}

// -- start -----------------------------------------------------------------------------------------------
async function loadRecipes() {
  const select = $("#recipe");
  try {
    const names = await api("ui/recipes");
    select.append(...names.map((name) => el("option", { value: name }, `recipe: ${name}`)));
  } catch (e) { /* offer the plain conversion only */ }
}

function recipeChosen() {   // a recipe decides its own outputs: the Output choice is then not used
  const recipe = $("#recipe").value !== "";
  $("#kind").disabled = recipe;
  $("#recipe-note").hidden = !recipe;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#token").value = localStorage.getItem("tilewright-token") || "";
  $("#token").addEventListener("change", () => localStorage.setItem("tilewright-token", $("#token").value.trim()));
  $("#upload-form").addEventListener("submit", upload);
  $("#recipe").addEventListener("change", recipeChosen);
  $("#gallery-collection").addEventListener("change", refreshGallery);
  loadRecipes();
  refreshCollections();
  refreshGallery();
  refreshJobs();
  setInterval(refreshJobs, 5000);
  const wanted = new URLSearchParams(location.search).get("image");
  if (wanted) openViewer(wanted);
});
