// tilewright's web page: upload with progress, live jobs (server-sent events), gallery (search, pages,
// delete), and the image's metadata, outputs and associated images beside the viewer (viewer.js).
// Every URL here is relative (no leading "/"): the page is served at the app's root ("PREFIX/" or
// "PREFIX/ui"), so the same page works with the app at the root of a host or under a proxy's path prefix.
"use strict";

const $ = (selector) => document.querySelector(selector);
const FINISHED = ["succeeded", "failed", "cancelled"];
const jobs = new Map();      // id -> job
const streams = new Map();   // id -> EventSource
let openImage = null;        // {id, job_id, tiles} of the image in the viewer
// images per gallery page (?per_page=N in the page's address: a smaller page on a small screen, or in tests)
const PAGE = Math.min(200, Number.parseInt(new URLSearchParams(location.search).get("per_page"), 10) || 24);
let galleryOffset = 0;

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
      message.textContent = `${body.image.name} uploaded to "${body.image.collection}"; job ${body.job.id.slice(0, 8)} ${jobWhat(body.job)}.`;
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

function caption(name) {   // a name breaks only after _ - . or a space, never inside a word
  const box = el("div", { class: "name", title: name });
  for (const piece of name.split(/(?<=[_\-. ])/)) box.append(piece, el("wbr"));
  return box;
}

async function refreshGallery() {
  const collection = $("#gallery-collection").value, q = $("#gallery-search").value.trim();
  const params = new URLSearchParams({ limit: PAGE, offset: galleryOffset });
  if (collection) params.set("collection", collection);
  if (q) params.set("q", q);
  let images = [], total = 0;
  try {
    const response = await fetch(`images?${params}`, { headers: authHeaders() });
    if (!response.ok) return;
    images = await response.json();
    total = Number(response.headers.get("X-Total-Count") || images.length);
  } catch (e) { return; }
  if (!images.length && galleryOffset > 0 && total > 0) {   // the last image of a page deleted: back a page
    galleryOffset = Math.max(0, galleryOffset - PAGE);
    return refreshGallery();
  }
  const box = $("#thumbs");
  box.replaceChildren();
  if (!images.length) box.append(el("p", { class: "muted" }, q ? `no image matches “${q}”` : "no images yet"));
  for (const image of images) {
    const remove = el("button", { class: "delete secondary", type: "button", title: `delete ${image.name}`,
                                  "aria-label": `delete ${image.name}`, onclick: (e) => { e.stopPropagation(); deleteImage(image); } }, "×");
    box.append(el("figure", { class: "thumb", "data-image": image.id, tabindex: 0, onclick: () => openViewer(image.id),
                              onkeydown: (e) => { if (e.key === "Enter") openViewer(image.id); } },
      remove,
      el("img", { src: `images/${image.id}/thumbnail?size=166`, alt: image.name, loading: "lazy" }),
      caption(image.name),
      el("div", { class: "collection" }, `${image.collection} · ${image.state || ""}`)));
  }
  const last = Math.min(total, galleryOffset + images.length);
  $("#page-info").textContent = total ? `${galleryOffset + 1}–${last} of ${total}` : "";
  $("#page-prev").disabled = galleryOffset === 0;
  $("#page-next").disabled = last >= total;
}

async function deleteImage(image) {
  if (!confirm(`Delete ${image.name} and everything made from it?`)) return;
  const message = $("#gallery-message");
  try {
    await api(`images/${image.id}`, { method: "DELETE" });
    message.className = "message"; message.textContent = `${image.name} deleted.`;
    if (openImage && openImage.id === image.id) { $("#viewer-section").hidden = true; openImage = null; }
  } catch (e) {
    message.className = "message error";
    message.textContent = `Cannot delete ${image.name}: ${e.message}`;
  }
  refreshCollections();
  refreshGallery();
}

function outputLinks(record) {   // what its job made (a recipe's thumbnails, copies, metadata.json), linked
  const urls = record.urls || [];
  if (!urls.length) return null;
  const list = el("ul", { class: "outputs" });
  for (const url of urls) {
    const href = url.startsWith("/") ? url.slice(1) : url, name = decodeURIComponent(href.split("/").pop());
    const picture = /\.(jpe?g|png|webp)$/i.test(name) ? el("img", { src: href, alt: name, loading: "lazy" }) : null;
    list.append(el("li", {}, el("a", { href, target: "_blank", rel: "noopener" }, picture, name)));
  }
  return el("section", { class: "made-files" }, el("h3", {}, "Outputs"), list);
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

async function openViewer(id, keepView = false, view = null) {
  let info, record;
  try {
    [info, record] = await Promise.all([api(`images/${id}/info`), api(`images/${id}`)]);
  } catch (e) {
    alert(`Cannot open image: ${e.message}`);
    return;
  }
  const kept = keepView && openImage && openImage.id === id ? TW.currentView() : null;
  openImage = { id, job_id: record.job_id, tiles: info.tiles };
  const section = $("#viewer-section");
  section.hidden = false;
  $("#viewer-title").textContent = `${record.name} — ${tilesNote(info, record)}`;
  const meta = $("#meta");
  meta.replaceChildren(metaList([
    ["id", id], ["name", record.name], ["stored as", record.filename !== record.name ? record.filename : null],
    ["collection", record.collection], ["format", info.format], ["vendor", info.vendor],
    ["size", `${info.width} × ${info.height} px`], ["levels", info.levels.length],
    ["tile", `${info.tile_width} × ${info.tile_height}`],
    ["resolution", info.mpp_x ? `${info.mpp_x.toFixed(4)} × ${info.mpp_y.toFixed(4)} µm/px` : null],
    ["objective", info.objective_power ? `${info.objective_power}×` : null],
    ["tiles", info.tiles], ["state", record.state],
    ["Deep Zoom", info.dzi], ["IIIF", info.iiif],
  ]));
  const associated = el("div", { class: "associated" });
  for (const url of info.associated || []) {   // the server's links start with its root path: only the name is taken
    const name = url.split("/").pop();
    associated.append(el("figure", {}, el("img", { src: `images/${id}/associated/${name}`, alt: name }),
                         el("figcaption", { class: "muted" }, name)));
  }
  if (associated.children.length) meta.append(el("h3", {}, "Associated images"), associated);
  const made = outputLinks(record);
  if (made) meta.append(made);
  const props = Object.entries(info.properties || {});
  if (props.length) meta.append(el("details", {}, el("summary", {}, `${props.length} properties`), metaList(props)));
  if (typeof OpenSeadragon === "undefined") {
    $("#viewer").replaceChildren(el("p", { class: "error" }, "OpenSeadragon is missing: run `make` on the server."));
    return;
  }
  // The tile URLs name what they show: the published pyramid has another grid than the dynamic tiles at the
  // same paths, and a browser reuses an image it already has in the page for the same URL whatever its
  // Cache-Control says (HTML's "list of available images"): a reopened viewer would show the old tiles.
  const version = info.tiles === "prebuilt" ? `prebuilt-${record.job_id || ""}` : "dynamic";
  TW.show(info, `images/${id}.dzi?tiles=${encodeURIComponent(version)}`, view || kept);
  if (!keepView) section.scrollIntoView({ behavior: "instant", block: "start" });
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
  const fromStart = () => { galleryOffset = 0; refreshGallery(); };
  $("#gallery-collection").addEventListener("change", fromStart);
  let typing = null;
  $("#gallery-search").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(fromStart, 250); });
  $("#page-prev").addEventListener("click", () => { galleryOffset = Math.max(0, galleryOffset - PAGE); refreshGallery(); });
  $("#page-next").addEventListener("click", () => { galleryOffset += PAGE; refreshGallery(); });
  loadRecipes();
  refreshCollections();
  refreshGallery();
  refreshJobs();
  setInterval(refreshJobs, 5000);
  // a shared link: #image=ID&x=..&y=..&zoom=..[&rotation=..&flip=1] (or the older ?image=ID)
  const linked = TW.parseHash(location.hash);
  const wanted = linked.image || new URLSearchParams(location.search).get("image");
  if (wanted) openViewer(wanted, false, linked.view);
});
