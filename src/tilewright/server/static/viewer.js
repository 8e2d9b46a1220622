// The slide viewer on OpenSeadragon: scale bar (from the slide's µm per pixel), magnification readout and
// presets (from the objective power), cursor position in slide pixels and microns, rotate and flip, the
// background, a shareable link (the URL's hash: image and viewport), and OpenSeadragon's own keyboard
// navigation. Plain JS; app.js calls `TW.show(...)`. A test reads `window.tilewright`.
"use strict";

const TW = (() => {
  const $ = (selector) => document.querySelector(selector);
  const PRESETS = [1, 2, 5, 10, 20, 40, 60, 80];
  const MAX_ZOOM_PIXEL_RATIO = 2;   // up to 2 screen pixels per slide pixel ("40x" of a 20x scan)
  let viewer = null;
  let slide = null;                 // {id, mpp, objective, estimated, width, height}
  let pending = null;               // the view to apply when the image opens

  function niceMicrons(max) {       // the largest 1, 2 or 5 × 10^n µm not over `max`
    const power = 10 ** Math.floor(Math.log10(max));
    return [5, 2, 1].map((n) => n * power).find((n) => n <= max) || power;
  }

  function lengthText(um) {
    if (um >= 1000) return `${um / 1000} mm`;
    if (um >= 1) return `${um} µm`;
    return `${Math.round(um * 1000)} nm`;
  }

  function imageZoom() {            // screen (CSS) pixels per level-0 slide pixel
    return viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
  }

  function update() {               // the scale bar and the magnification readout
    if (!viewer || !slide || !viewer.world.getItemCount()) return;
    const zoom = imageZoom(), bar = $("#scalebar");
    if (slide.mpp) {
      const perPixel = slide.mpp / zoom, microns = niceMicrons(perPixel * 160);
      bar.hidden = false;
      bar.querySelector(".bar").style.width = `${(microns / perPixel).toFixed(1)}px`;
      bar.querySelector(".label").textContent = lengthText(microns);
      bar.dataset.microns = microns;
    } else {
      bar.hidden = true;
    }
    const readout = $("#mag-readout");
    readout.textContent = slide.objective
      ? `${slide.estimated ? "≈" : ""}${(slide.objective * zoom).toFixed(zoom * slide.objective < 10 ? 1 : 0)}×`
      : `${Math.round(zoom * 100)} %`;
    readout.dataset.zoom = zoom;
    for (const button of document.querySelectorAll("#mag-presets button")) {
      button.classList.toggle("active", Math.abs(slide.objective * zoom - Number(button.dataset.mag)) < 0.05);
    }
  }

  function setMagnification(mag) {
    viewer.viewport.zoomTo(viewer.viewport.imageToViewportZoom(mag / slide.objective));
  }

  function presets() {
    const box = $("#mag-presets");
    box.replaceChildren();
    if (!slide.objective) return;
    for (const mag of PRESETS.filter((m) => m <= slide.objective * MAX_ZOOM_PIXEL_RATIO)) {
      const button = document.createElement("button");
      button.type = "button"; button.className = "secondary"; button.dataset.mag = mag;
      button.textContent = `${mag}×`;
      button.title = `show at ${mag}× (${mag / slide.objective} screen pixels per slide pixel)`;
      button.addEventListener("click", () => setMagnification(mag));
      box.append(button);
    }
  }

  function cursor(event) {          // where the pointer is, in slide pixels and microns
    if (!slide || !viewer.world.getItemCount()) return;
    const point = viewer.viewport.viewportToImageCoordinates(viewer.viewport.pointFromPixel(event.position));
    const x = Math.floor(point.x), y = Math.floor(point.y), out = $("#cursor");
    const inside = x >= 0 && y >= 0 && x < slide.width && y < slide.height;
    out.dataset.x = x; out.dataset.y = y;
    const microns = slide.mpp ? ` · ${(x * slide.mpp).toFixed(1)}, ${(y * slide.mpp).toFixed(1)} µm` : "";
    out.textContent = `x ${x}, y ${y} px${microns}${inside ? "" : " (outside the image)"}`;
  }

  // -- the view: what a link restores ------------------------------------------------------------------
  function currentView() {
    const center = viewer.viewport.getCenter(false);
    return { x: center.x, y: center.y, zoom: viewer.viewport.getZoom(false),
             rotation: ((viewer.viewport.getRotation() % 360) + 360) % 360, flip: viewer.viewport.getFlip() };
  }

  function applyView(view) {        // at once, in one order: the same numbers give the same pixels
    viewer.viewport.setFlip(Boolean(view.flip));
    viewer.viewport.setRotation(view.rotation || 0, true);
    viewer.viewport.zoomTo(view.zoom, null, true);
    viewer.viewport.panTo(new OpenSeadragon.Point(view.x, view.y), true);
    viewer.forceRedraw();
  }

  function viewHash(id, view) {     // String(number) reads back as the same number: the link is exact
    const params = new URLSearchParams({ image: id, x: String(view.x), y: String(view.y), zoom: String(view.zoom) });
    if (view.rotation) params.set("rotation", String(view.rotation));
    if (view.flip) params.set("flip", "1");
    return `#${params}`;
  }

  function parseHash(hash) {        // -> {image, view | null}
    const params = new URLSearchParams(hash.replace(/^#/, ""));
    const image = params.get("image");
    const [x, y, zoom] = ["x", "y", "zoom"].map((k) => Number.parseFloat(params.get(k)));
    const view = [x, y, zoom].every(Number.isFinite) && zoom > 0
      ? { x, y, zoom, rotation: Number.parseFloat(params.get("rotation")) || 0, flip: params.get("flip") === "1" }
      : null;
    return { image, view };
  }

  function remember() {             // the address bar always holds the link to what is shown
    if (!slide || !viewer.world.getItemCount()) return;
    const hash = viewHash(slide.id, currentView());
    history.replaceState(null, "", hash);
    $("#share-url").value = location.href;
  }

  async function share() {
    remember();
    const input = $("#share-url"), status = $("#share-status");
    try {
      await navigator.clipboard.writeText(input.value);
      status.textContent = "link copied";
    } catch (e) {                   // no clipboard (plain http, or refused): the link is selected to copy
      input.select();
      status.textContent = "copy the selected link";
    }
  }

  // -- background -----------------------------------------------------------------------------------------
  function setBackground(name) {
    $("#viewer").dataset.background = name;
    $("#background").value = name;
  }

  function create() {
    viewer = OpenSeadragon({
      id: "viewer", prefixUrl: "vendor/openseadragon/images/", showNavigator: true, navigatorPosition: "TOP_RIGHT",
      crossOriginPolicy: "Anonymous", maxZoomPixelRatio: MAX_ZOOM_PIXEL_RATIO, showRotationControl: true,
      showFlipControl: true, gestureSettingsTouch: { pinchRotate: true },
      // the 2D canvas drawer: the same pixels on every machine (with or without a GPU), readable by tests
      drawer: "canvas",
    });
    viewer.addHandler("open", () => {
      if (pending) applyView(pending);
      pending = null;
      window.tilewright.opened += 1;    // how many times an image has opened here (tests wait on it)
      update();
      remember();
    });
    for (const name of ["animation", "resize", "rotate", "flip"]) viewer.addHandler(name, update);
    viewer.addHandler("animation-finish", remember);
    viewer.addHandler("flip", remember);
    new OpenSeadragon.MouseTracker({ element: viewer.canvas, moveHandler: cursor });
    $("#rotate-left").addEventListener("click", () => viewer.viewport.setRotation(viewer.viewport.getRotation() - 90));
    $("#rotate-right").addEventListener("click", () => viewer.viewport.setRotation(viewer.viewport.getRotation() + 90));
    $("#flip").addEventListener("click", () => viewer.viewport.toggleFlip());
    $("#background").addEventListener("change", (e) => {
      setBackground(e.target.value);
      localStorage.setItem("tilewright-background", e.target.value);
    });
    $("#share").addEventListener("click", share);
    window.tilewright = { viewer, applyView, currentView, parseHash, opened: 0 };
    window.tilewrightViewer = viewer;
  }

  // Open `source` for the image `info` describes; `view`: the viewport to show (a link's, or the one kept
  // when the same image is reopened on its published pyramid).
  function show(info, source, view = null) {
    if (!viewer) create();
    const mpp = info.mpp_x && info.mpp_y ? (info.mpp_x + info.mpp_y) / 2 : info.mpp_x || null;
    // no objective power but a resolution: the usual convention (40× ≈ 0.25 µm/px), said as an estimate
    const objective = info.objective_power || (mpp ? Math.round(10 / mpp) : null);
    slide = { id: info.id, mpp, objective, estimated: !info.objective_power && Boolean(objective),
              width: info.width, height: info.height };
    presets();
    // brightfield (colour) slides on white, as on a glass slide; one grey band (often fluorescence) on black
    setBackground(localStorage.getItem("tilewright-background") || (info.bands >= 3 ? "white" : "black"));
    pending = view;
    viewer.open(source);
  }

  return { show, parseHash, currentView: () => (viewer && viewer.world.getItemCount() ? currentView() : null) };
})();
