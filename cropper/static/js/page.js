// The page: open an image, choose or draw a box, crop it or a batch, or make a data set; the address
// keeps the view.

import * as api from "./api.js";
import * as datasets from "./datasets.js";
import {clearError, showError} from "./errors.js";
import {cropOptions as options, setCropOptions, updateFitControls} from "./options.js";
import {Viewer, describeBox} from "./viewer.js";

const $ = (id) => document.getElementById(id);
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
const COORDS = ["x1", "y1", "x2", "y2"];
const NO_CROP_YET = $("result-empty").textContent;  // what the crop's place says as the page starts

const state = {
  image: null,        // {uuid, width, height} of the open image
  boxes: [],          // its annotations, as GET /images/<uuid>/boxes lists them
  annotation: null,   // the annotation chosen (its box may have been changed since)
  checked: new Set(), // box uuids checked for a batch
  batch: null,        // the last batch: {answers, name, next, total, request} (next: the concept page after it)
  opening: 0,         // the latest open; answers to older ones are dropped
  cropping: 0,        // the latest crop asked; answers to older ones (or for an image since closed) are dropped
  resultUrl: null,    // object URL of the crop shown
};

const viewer = new Viewer({
  element: $("viewer"),
  layer: $("draw-layer"),
  selection: $("selection"),
  region: $("region-outline"),
  onActivate: (boxUuid) => choose(boxUuid, {crop: true}),
  onHover: (boxUuid) => hover(boxUuid),
  onSelection: (box, final, kind) => {
    if (kind === "draw") state.annotation = null;  // a new box; moving a corner only changes the chosen one
    setCoords(box);
    if (final) writeUrl();
  },
});
window.cropperPage = {viewer: viewer.osd, state};  // for the browser tests and for debugging in the console

// The concept form's fields, by the service's names for them.
const FIELD_IDS = {limit: "concept-limit", concept: "concept-name"};
const conceptInput = (field) => $(FIELD_IDS[field] || field);

// ---------------------------------------------------------------- opening an image --

async function openText(text) {
  clearError($("open-error"));
  const match = text.match(UUID);
  if (!match) {
    const message = /^https?:\/\//i.test(text.trim())
      ? "This URL has no UUID in it. A FathomNet image file's URL (…/static/m3/framegrabs/…) cannot be looked " +
        "up through this service: copy the image's UUID from its page on fathomnet.org, or an annotation's UUID."
      : "Paste an image UUID, a bounding box UUID, or a URL that contains one.";
    showError($("open-error"), {title: "Nothing to open", message});
    return;
  }
  const uuid = match[0].toLowerCase();
  try {
    await openImage(uuid, {push: true});
  } catch (error) {
    if (error.code !== "image_not_found") return failOpen(uuid, error, {push: true});
    await openBox(uuid, error);
  }
}

// The error where the uuid was typed, over no image: the one open before is not what was asked for.
// push: a new address (without the image), so Back returns to the image before.
function failOpen(text, error, {push = false} = {}) {
  closeImage();
  $("open-input").value = text;
  if (push) writeUrl(true);
  showError($("open-error"), error);
}

// A uuid that is not an image may be an annotation's: its crop names its image.
async function openBox(uuid, imageError) {
  let answer;
  const body = {box_uuid: uuid, ...options()};
  const mine = state.opening;  // another open since: this one's answer or error is dropped
  try {
    answer = await api.crop(body);
  } catch (error) {
    if (mine !== state.opening) return;
    if (error.code !== "box_not_found") return failOpen(uuid, error, {push: true});
    return failOpen(uuid, {  // both of the service's messages: neither an image nor a box
      title: "Not found (404 image_not_found, box_not_found)",
      message: `${imageError.message} ${error.message}`,
    }, {push: true});
  }
  if (mine !== state.opening) return;
  try {
    if (await openImage(answer.uuid, {push: true})) choose(uuid, {answer: {answer, body}});
  } catch (error) {
    failOpen(uuid, error, {push: true});
  }
}

// -> true when this image is now open (false: a later open overtook it); throws the service's error.
async function openImage(uuid, {push = false} = {}) {
  const mine = ++state.opening;
  status("Loading annotations…");
  let listing;
  try {
    listing = await api.getBoxes(uuid);
  } catch (error) {
    if (mine !== state.opening) return false;  // an older open's error: not this image's
    throw error;
  } finally {
    if (mine === state.opening) status(null);
  }
  if (mine !== state.opening) return false;
  showImage({uuid: listing.uuid, width: listing.width, height: listing.height}, listing.boxes);
  viewer.setImage(listing.width, listing.height);
  $("draw-toggle").disabled = false;
  if (push) writeUrl(true);
  status("Loading the image…");
  let shown = true;
  try {
    await viewer.open(listing.uuid);
  } catch (error) {
    shown = false;
    showError($("viewer-error"), {title: "The image could not be shown", message: error.message});
  } finally {
    if (mine === state.opening) status(null);
  }
  if (mine !== state.opening) return false;
  if (shown) viewer.setAnnotations(state.boxes);
  applyFilter();
  return true;
}

// The state, list, fields and result of a newly opened image (null: none), nothing of the one before.
function showImage(image, boxes) {
  Object.assign(state, {image, boxes, annotation: null});
  state.checked.clear();
  clearResult();  // and a crop still on its way is of the image before
  $("open-input").value = image ? image.uuid : "";
  $("iiif-links").hidden = !image;
  if (image) {
    $("manifest-link").href = `/iiif/manifests/${image.uuid}`;
    $("mirador-link").href = `/mirador?image=${image.uuid}`;
  }
  setDrawMode(false);  // a drag on a new image pans, as its hint says, until "Draw a box" is pressed again
  clearError($("viewer-error"));
  clearError($("crop-error"));
  for (const id of COORDS) $(id).value = "";
  viewer.setSelection(null);
  viewer.setRegion(null);
  renderFilter();
  renderList();
  updateSelectionInfo();
}

// The address names no image (back to the first page): nothing is open.
function closeImage() {
  state.opening++;
  showImage(null, []);
  clearError($("open-error"));
  viewer.osd.clearOverlays();
  viewer.osd.close();
  viewer.size = null;
  $("draw-toggle").disabled = true;
  $("viewer-hint").textContent = "Open an image to see it here with its annotations.";
  status(null);
}

function status(text) {
  $("viewer-status").hidden = !text;
  $("viewer-status").textContent = text || "";
}

// ---------------------------------------------------------------- the annotation list --

function renderFilter() {
  const counts = new Map();
  for (const b of state.boxes) counts.set(b.concept, (counts.get(b.concept) || 0) + 1);
  const select = $("concept-filter");
  const all = new Option(`All concepts (${state.boxes.length})`, "");
  select.replaceChildren(all, ...[...counts].sort().map(([c, n]) => new Option(`${c} (${n})`, c)));
  select.disabled = state.boxes.length === 0;
  $("concept-names").replaceChildren(...[...counts.keys()].sort().map((c) => new Option(c)));
}

function renderList() {
  const list = $("box-list");
  list.replaceChildren();
  for (const b of state.boxes) {
    const item = document.createElement("li");
    item.dataset.box = b.box_uuid;
    item.dataset.concept = b.concept;
    const check = document.createElement("input");
    check.type = "checkbox";
    check.disabled = !b.region;
    check.setAttribute("aria-label", `Batch: ${b.concept}, ${describeBox(b)}`);
    check.addEventListener("change", () => {
      if (check.checked) state.checked.add(b.box_uuid); else state.checked.delete(b.box_uuid);
      updateBatchButtons();
    });
    const button = document.createElement("button");
    button.type = "button";
    button.className = "box-item";
    const name = document.createElement("span");
    name.className = "concept";
    name.textContent = b.concept;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = describeBox(b);
    button.append(name, meta);
    button.addEventListener("click", () => choose(b.box_uuid, {crop: true}));
    button.addEventListener("pointerenter", () => viewer.mark(b.box_uuid, "hover", true));
    button.addEventListener("pointerleave", () => viewer.mark(b.box_uuid, "hover", false));
    button.addEventListener("focus", () => viewer.mark(b.box_uuid, "hover", true));
    button.addEventListener("blur", () => viewer.mark(b.box_uuid, "hover", false));
    item.append(check, button);
    list.append(item);
  }
  $("boxes-count").textContent = state.image ? `(${state.boxes.length})` : "";
  $("boxes-empty").hidden = state.boxes.length > 0;
  $("boxes-empty").textContent = state.image ? "FathomNet has no annotations on this image." : "No image open.";
  updateBatchButtons();
}

function applyFilter() {
  const concept = $("concept-filter").value;
  const shown = new Set(state.boxes.filter((b) => !concept || b.concept === concept).map((b) => b.box_uuid));
  for (const item of $("box-list").children) item.hidden = !shown.has(item.dataset.box);
  viewer.showOnly(concept ? shown : null);
  $("check-shown").textContent = concept ? `Check all ${concept}` : "Check all shown";
  if (concept) $("concept-name").value = concept;
  updateBatchButtons();
}

function hover(boxUuid) {
  for (const item of $("box-list").children) item.classList.toggle("hover", item.dataset.box === boxUuid);
}

function updateBatchButtons() {
  $("crop-checked").textContent = `Crop checked (${state.checked.size})`;
  $("crop-checked").disabled = state.checked.size === 0;
  $("check-shown").disabled = !state.boxes.length;
}

// ---------------------------------------------------------------- the box being cropped --

function choose(boxUuid, {crop = false, answer = null} = {}) {
  const b = state.boxes.find((x) => x.box_uuid === boxUuid);
  if (!b) {
    showError($("crop-error"), {title: "Not found", message: `This image has no annotation ${boxUuid}.`});
    return;
  }
  state.annotation = b;
  setCoords(b.region || b.box);
  writeUrl();
  if (answer) showResult(answer.answer, answer.body);
  else if (crop) cropNow();
}

function setCoords(box, fromFields = false) {
  if (!fromFields) COORDS.forEach((id, i) => { $(id).value = box ? box[i] : ""; });
  viewer.setSelection(box);
  clearResult("This box is not cropped yet: press Crop.");  // the crop shown, and its outline, are of the box before
  updateSelectionInfo();
}

// No crop shown (and none still on its way will be): the result's place says why.
function clearResult(why = NO_CROP_YET) {
  state.cropping++;
  $("crop-button").textContent = "Crop";
  $("result").hidden = true;
  $("result-empty").hidden = false;
  $("result-empty").textContent = why;
  viewer.setRegion(null);
}

function fieldCoords() {
  return COORDS.map((id) => ($(id).value.trim() === "" ? null : Number($(id).value)));
}

function unchanged() {  // the chosen annotation, not moved: crop it by its box_uuid
  const a = state.annotation;
  return a && (a.region || a.box).every((v, i) => v === fieldCoords()[i]);
}

function updateSelectionInfo() {
  const coords = fieldCoords();
  const complete = coords.every((v) => v !== null && Number.isFinite(v));
  const a = state.annotation;
  let text = "Click an annotation, or draw a box: “Draw a box”, then drag on the image.";
  if (a && unchanged()) text = `Annotation ${a.concept} (${a.box_uuid.slice(0, 8)}…): cropped by its box_uuid.`;
  else if (a && complete) text = `Changed from the annotation ${a.concept}: this box is cropped as it is now.`;
  else if (complete) text = `Your box: ${coords[2] - coords[0]}×${coords[3] - coords[1]} px.`;
  $("selection-info").textContent = text;
  const chosen = a && unchanged() ? a.box_uuid : null;  // the annotation is marked only while it is what gets cropped
  viewer.mark(chosen, "selected", true);
  for (const item of $("box-list").children) {
    item.classList.toggle("selected", item.dataset.box === chosen);
    item.querySelector(".box-item").setAttribute("aria-pressed", String(item.dataset.box === chosen));
  }
  $("crop-button").disabled = $("crop-button-top").disabled = !state.image || !complete;
}

function cropBody() {
  if (unchanged()) return {box_uuid: state.annotation.box_uuid, ...options()};
  const [x1, y1, x2, y2] = fieldCoords();
  return {uuid: state.image.uuid, x1, y1, x2, y2, ...options()};
}

async function cropNow() {
  clearError($("crop-error"));
  const body = cropBody();
  const mine = ++state.cropping;
  $("crop-button").disabled = $("crop-button-top").disabled = true;
  $("crop-button").textContent = "Cropping…";
  try {
    const answer = await api.crop(body);
    if (mine === state.cropping) showResult(answer, body);
  } catch (error) {
    if (mine !== state.cropping) return;
    const box = error.code === "box_outside_image" ? COORDS.map($) : [];
    showError($("crop-error"), error, {mark: box});
  } finally {
    if (mine === state.cropping) $("crop-button").textContent = "Crop";
    updateSelectionInfo();
  }
}

async function showResult(answer, body) {
  $("result").hidden = false;
  $("result-empty").hidden = true;
  $("result-url").value = answer.url;
  $("result-img").alt = `Crop of ${answer.concept || "the box"} [${answer.region.join(", ")}] of image ${answer.uuid}`;
  const made = `${answer.width} × ${answer.height} px · ${answer.format}${answer.cached ? " · cached" : ""}`;
  $("result-size").textContent = `${made} · measuring bytes…`;
  $("copy-status").textContent = "";
  const {curl, python} = api.snippets("/cropper/", body);
  $("curl-line").textContent = curl;
  $("python-line").textContent = python;
  viewer.setRegion(answer.region);
  // One download serves both the picture and its byte size.
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = null;
  try {
    const response = await fetch(answer.url);
    if (!response.ok) throw new Error(`${response.status}`);
    const blob = await response.blob();
    if ($("result-url").value !== answer.url) return;  // a later crop is shown already
    state.resultUrl = URL.createObjectURL(blob);
    $("result-img").src = state.resultUrl;
    $("result-size").textContent = `${made} · ${api.formatBytes(blob.size)} (${blob.size.toLocaleString("en")} bytes)`;
  } catch {
    $("result-img").src = answer.url;
    $("result-size").textContent = `${made} · byte size unknown (the crop could not be fetched here)`;
  }
}

// ---------------------------------------------------------------- batches --

async function runBatch(request, errorEl, name, button, body = null) {
  clearError(errorEl);
  button.disabled = true;
  try {
    const answer = await request();
    const answers = Array.isArray(answer) ? answer : answer.crops;
    state.batch = {answers, name, next: answer.next_offset ?? null, total: answer.total, request: body};
    renderBatch();
  } catch (error) {
    showError(errorEl, error, {inputOf: conceptInput});
  } finally {
    button.disabled = false;
    updateBatchButtons();
  }
}

function cropChecked() {
  const crops = state.boxes.filter((b) => state.checked.has(b.box_uuid)).map((b) => ({box_uuid: b.box_uuid}));
  return runBatch(() => api.cropList({crops, ...options()}), $("batch-error"), `image-${state.image.uuid}`,
    $("crop-checked"));
}

// from: the request of the page shown, for its next page (not what the fields say now).
function cropConcept(offset = 0, from = null) {
  const {offset: _, ...asked} = from || {
    concept: $("concept-name").value.trim(), limit: Number($("concept-limit").value || 20), ...options(),
  };
  const body = offset ? {...asked, offset} : asked;
  return runBatch(() => api.cropConcept(body), $("concept-error"), body.concept.replace(/\W+/g, "-"),
    $("concept-form").querySelector("button"), body);
}

function renderBatch() {
  const {answers, next, total, request} = state.batch;
  const made = answers.filter((a) => a.url);
  const failed = answers.length - made.length;
  let summary = `${made.length} crop${made.length === 1 ? "" : "s"} made${failed ? `, ${failed} failed` : ""}.`;
  if (total !== undefined) {
    const first = (request.offset || 0) + 1;
    summary += ` Boxes ${first}–${first + answers.length - 1} of ${total} ${request.concept} boxes in FathomNet.`;
  }
  $("batch-summary").textContent = summary;
  $("next-page").hidden = next === null;
  const grid = $("batch-grid");
  grid.replaceChildren();
  for (const a of answers) {
    const item = document.createElement("li");
    if (a.url) {
      item.append(...batchCrop(a));
    } else {
      item.className = "failed";  // one item failed, the rest stand: the service's words for it
      item.textContent = `${a.concept || a.box_uuid || a.uuid}: ${a.error.message} (${a.error.code})`;
    }
    grid.append(item);
  }
  $("batch").hidden = false;
}

// A crop of a batch: its picture (a link to the file), then what a person building a data set checks:
// the concept, which annotation (its uuid's start, whole on hover) and its review state, the size.
function batchCrop(a) {
  const link = document.createElement("a");
  link.className = "crop-url";
  link.href = a.url;
  link.title = a.url;
  const img = document.createElement("img");
  img.src = a.url;
  img.loading = "lazy";
  img.alt = `${a.concept || "crop"}, ${a.width}×${a.height} px`;
  link.append(img);
  const concept = document.createElement("p");
  concept.className = "crop-concept";
  concept.textContent = a.concept || "";
  const which = document.createElement("p");
  which.className = "crop-box";
  const uuid = a.box_uuid || a.uuid;
  which.title = a.box_uuid ? `Annotation ${a.box_uuid}` : `Image ${a.uuid}`;
  which.textContent = [`${a.box_uuid ? "box" : "image"} ${uuid.slice(0, 8)}`, a.review?.toLowerCase(),
                       `${a.width}×${a.height} px`].filter(Boolean).join(" · ");
  return [link, concept, which];
}

function downloadCsv() {
  const blob = new Blob([api.toCsv(state.batch.answers)], {type: "text/csv"});
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `crops-${state.batch.name}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// ---------------------------------------------------------------- the address: a link opens the same view --

// The address leaves out what is as the page starts; the format's default is the service's (set by loadFormats).
const OPTION_PARAMS = {format: "", pad: "", square: "", width: "", height: "", fit: "contain", bg: "000000"};

function writeUrl(push = false) {
  const p = new URLSearchParams();
  if (state.image) p.set("image", state.image.uuid);
  if (unchanged()) p.set("box", state.annotation.box_uuid);
  else if (state.image) fieldCoords().forEach((v, i) => { if (v !== null) p.set(COORDS[i], v); });
  const o = options();
  const values = {
    format: o.format, pad: o.pad ?? "", square: o.square ? "1" : "", width: o.width ?? "", height: o.height ?? "",
    fit: o.fit || "contain", bg: o.background ? o.background.slice(1) : "000000",
  };
  for (const [key, fallback] of Object.entries(OPTION_PARAMS)) {
    if (String(values[key]) !== fallback) p.set(key, values[key]);
  }
  if ($("concept-filter").value) p.set("concept", $("concept-filter").value);
  if (datasets.isOpen()) p.set("dataset", datasets.jobId() || "");  // the panel open, with the job it follows
  const query = p.toString();
  const url = `${location.pathname}${query ? `?${query}` : ""}`;
  if (url !== `${location.pathname}${location.search}`) history[push ? "pushState" : "replaceState"](null, "", url);
}

function readOptions(p) {
  const formats = [...$("format").options].map((option) => option.value);
  setCropOptions("", {
    format: formats.includes(p.get("format")) ? p.get("format") : OPTION_PARAMS.format,
    pad: p.get("pad"), square: p.get("square") === "1", width: p.get("width"), height: p.get("height"),
    fit: ["cover", "fill", "letterbox"].includes(p.get("fit")) ? p.get("fit") : "contain",
    background: `#${p.get("bg")}`,
  });
}

// Opens what the address names; a box or coordinates in it are cropped at once, as the link's sender saw.
// initial: as the page starts, where an image opened already (typed before the page was ready) wins.
async function applyUrl({initial = false} = {}) {
  const p = new URLSearchParams(location.search);
  readOptions(p);
  datasets.applyAddress(p.has("dataset"), p.get("dataset"));
  if (initial && state.opening) return;
  const image = p.get("image");
  if (!image) {
    if (state.image || state.opening) closeImage();
    return;
  }
  clearError($("open-error"));
  try {
    if (!state.image || state.image.uuid !== image.toLowerCase()) {
      if (!(await openImage(image))) return;
    }
  } catch (error) {
    return failOpen(image, error);
  }
  const concept = p.get("concept") || "";
  if ([...$("concept-filter").options].some((o) => o.value === concept)) $("concept-filter").value = concept;
  applyFilter();
  if (p.get("box")) {
    choose(p.get("box").toLowerCase(), {crop: true});
  } else if (COORDS.every((k) => p.get(k) !== null)) {
    state.annotation = null;
    setCoords(COORDS.map((k) => Number(p.get(k))));
    cropNow();
  }
}

// ---------------------------------------------------------------- wiring --

function setDrawMode(on) {
  viewer.setDrawMode(on);
  $("draw-toggle").setAttribute("aria-pressed", String(on));
  $("draw-toggle").textContent = on ? "Drawing: on" : "Draw a box";
  $("viewer-hint").textContent = on
    ? "Drag on the image to draw a box; drag its corners to adjust. Esc or the button goes back to panning."
    : "Drag to pan, scroll or pinch to zoom; click an annotation to crop it.";
}

$("open-form").addEventListener("submit", (event) => {
  event.preventDefault();
  openText($("open-input").value);
});
$("crop-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!$("crop-button").disabled) cropNow();
});
for (const id of COORDS) {
  $(id).addEventListener("input", () => {
    const coords = fieldCoords();
    setCoords(coords.every((v) => v !== null && Number.isFinite(v)) ? coords : null, true);
    writeUrl();
  });
}
for (const id of ["format", "pad", "pad-unit", "square", "width", "height", "fit", "background"]) {
  $(id).addEventListener("input", () => { updateFitControls(); writeUrl(); });
  $(id).addEventListener("change", () => { updateFitControls(); writeUrl(); });
}
$("concept-filter").addEventListener("change", () => { applyFilter(); writeUrl(); });
$("check-shown").addEventListener("click", () => {
  for (const item of $("box-list").children) {
    const check = item.querySelector("input");
    if (!item.hidden && !check.disabled) { check.checked = true; state.checked.add(item.dataset.box); }
  }
  updateBatchButtons();
});
$("crop-checked").addEventListener("click", cropChecked);
$("concept-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!$("concept-name").value.trim()) {
    showError($("concept-error"), {title: "No concept", message: "Type a concept, or choose one in the filter."});
    return;
  }
  cropConcept();
});
$("next-page").addEventListener("click", () => {
  if (state.batch && state.batch.next !== null) cropConcept(state.batch.next, state.batch.request);
});
$("download-csv").addEventListener("click", downloadCsv);
$("copy-url").addEventListener("click", async () => {
  const url = $("result-url").value;
  try {
    await navigator.clipboard.writeText(url);
    $("copy-status").textContent = "Copied.";
  } catch {  // no clipboard access (an insecure origin): leave it selected for Ctrl+C
    $("result-url").select();
    $("copy-status").textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
});
$("draw-toggle").addEventListener("click", () => setDrawMode(!viewer.drawing));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && viewer.drawing) setDrawMode(false);
});
window.addEventListener("popstate", () => applyUrl());
// A mistake in this page must still say something where people look, not only in the console.
window.addEventListener("unhandledrejection", (event) => showError($("open-error"), event.reason));
window.addEventListener("error", (event) => showError($("open-error"), event.error || event.message));

// The format menus (the crop's, the data set's crops') hold what the service makes (its description's
// list), its default chosen.
async function loadFormats() {
  const formats = await api.outputFormats();
  for (const name of formats.names) {
    $("format").append(new Option(name, name));
    $("ds-format").append(new Option(name, name));
  }
  OPTION_PARAMS.format = $("ds-format").value = formats.default;
}
const panelReady = datasets.setupDatasetPanel({onAddress: writeUrl});
Promise.all([loadFormats(), panelReady]).catch((error) => showError($("open-error"), error))
  .finally(() => applyUrl({initial: true}));
