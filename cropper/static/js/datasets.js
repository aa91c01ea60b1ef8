// The data-set panel: a training set from FathomNet's annotations (POST /datasets), followed until its
// files are ready (GET /datasets/<id>). The page's address holds the job's id, so a link reopens the job.

import * as api from "./api.js";
import {clearError, showError} from "./errors.js";
import {copyOptionControls, cropOptions, setCropOptions, updateFitControls} from "./options.js";

const $ = (id) => document.getElementById(id);
const PREFIX = "ds-";      // the ids of the panel's copy of the crop options
const POLL_MS = 1000;      // how often a queued or running job is asked about
const RETRY_MS = 5000;     // after a look that failed on the way (the service busy or unreachable)
const SUGGESTED = 20;      // names offered as one types
const ACTIVE = ["queued", "running"];
const HINT = $("ds-concept-hint").textContent;  // the concept field's hint as the page starts

const panel = {
  concepts: [],        // the names chosen, in order
  job: null,           // the job followed: its last answer ({id} alone until the first comes)
  timer: null,         // the next look at it; null: the job is not being followed
  following: 0,        // bumped for every job followed: answers about the one before are dropped
  suggesting: 0,       // the latest suggestion lookup: older answers are dropped
  suggestTimer: null,  // typing waits a moment before asking
  announced: "",       // the status last told to screen readers
  splits: [],          // the service's split names, in its order
  onAddress: () => {}, // (push) what the address holds has changed
};

// ---------------------------------------------------------------- open, closed, and the address --

export function isOpen() {
  return !$("dataset-panel").hidden;
}

export function jobId() {
  return panel.job ? panel.job.id : null;
}

function setOpen(open) {
  $("dataset-panel").hidden = !open;
  $("dataset-toggle").setAttribute("aria-expanded", String(open));
  if (!open) stopFollowing();
}

// The address names the panel (dataset=) and the job followed in it (dataset=<id>), or neither. A job
// already shown is asked about again only if it is not being followed (the panel was closed meanwhile).
export function applyAddress(open, id) {
  setOpen(open);
  if (!open) return;
  if (!id) forgetJob();
  else if (id !== jobId() || panel.timer === null) follow(id, {fill: id !== jobId()});
}

// ---------------------------------------------------------------- concepts, suggested as one types --

function addConcept(text) {
  const name = text.trim();
  if (name && !panel.concepts.includes(name)) panel.concepts.push(name);
  renderConcepts();
  panel.suggesting++;  // suggestions for what was typed are of no use now
  $("ds-concept-names").replaceChildren();
  $("ds-concept-hint").textContent = HINT;
}

function renderConcepts(unknown = []) {
  $("ds-concepts").replaceChildren(...panel.concepts.map((name) => {
    const item = document.createElement("li");
    item.classList.toggle("unknown", unknown.includes(name));
    const text = document.createElement("span");
    text.textContent = name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${name}`);
    remove.addEventListener("click", () => {
      panel.concepts = panel.concepts.filter((n) => n !== name);
      renderConcepts(unknown);
      $("ds-concept").focus();  // the button is gone: focus goes where names are added
    });
    item.append(text, remove);
    return item;
  }));
}

async function suggest(prefix) {
  const mine = ++panel.suggesting;
  if (!prefix.trim()) {
    $("ds-concept-names").replaceChildren();
    return;
  }
  try {
    const {concepts, total} = await api.conceptNames(prefix, SUGGESTED);
    if (mine !== panel.suggesting) return;
    $("ds-concept-names").replaceChildren(...concepts.map((name) => new Option(name)));
    const more = total > concepts.length ? `; the first ${concepts.length} are offered` : "";
    const names = total === 1 ? "name starts" : "names start";
    $("ds-concept-hint").textContent = total ? `${total} FathomNet concept ${names} with “${prefix}”${more}.`
      : `No FathomNet concept name starts with “${prefix}”.`;
  } catch (error) {
    if (mine !== panel.suggesting) return;
    const {title, message} = api.describe(error);
    $("ds-concept-hint").textContent = `No suggestions: ${title}. ${message}`;
  }
}

// A name picked from the suggestions is added at once; typing asks for suggestions.
function onConceptInput(event) {
  const field = $("ds-concept");
  const picked = !(event instanceof InputEvent) || event.inputType === "insertReplacementText";
  if (picked && [...$("ds-concept-names").options].some((option) => option.value === field.value)) {
    addConcept(field.value);
    field.value = "";
    return;
  }
  clearTimeout(panel.suggestTimer);
  panel.suggestTimer = setTimeout(() => suggest(field.value.trimStart()), 150);
}

// 422 unknown_concept: the names FathomNet lacks, marked, each with the close names the service offers.
function offerSuggestions(error) {
  const {unknown = [], suggestions = {}} = error.details;
  renderConcepts(unknown);
  for (const name of unknown) {
    const line = document.createElement("p");
    line.className = "suggestions";
    const close = suggestions[name] || [];
    line.textContent = close.length ? `Instead of “${name}”: ` : `FathomNet has no name close to “${name}”.`;
    for (const other of close) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = other;
      button.addEventListener("click", () => {
        panel.concepts = [...new Set(panel.concepts.map((n) => (n === name ? other : n)))];
        clearError($("ds-concepts-error"));
        renderConcepts();
        $("ds-start-button").focus();
      });
      line.append(button);
    }
    $("ds-concepts-error").append(line);
  }
}

// ---------------------------------------------------------------- the request, from the form and back --

const FILTER = "filters.";

function filterInputs() {
  return [...$("dataset-form").querySelectorAll(`[data-field^="${FILTER}"]`)];
}

// A check box counts only where it differs from its default (FathomNet's, or off), so a form left as it
// came asks what the service's defaults ask, and shares a job with the same request from a lab tool.
function readFilters() {
  const filters = {};
  for (const input of filterInputs()) {
    const name = input.dataset.field.slice(FILTER.length);
    if (input.type === "checkbox") {
      if (input.checked !== input.defaultChecked) filters[name] = input.checked;
    } else if (input.value.trim() !== "") {
      filters[name] = filterValue(name, input);
    }
  }
  return filters;
}

function filterValue(name, input) {
  if (input.type === "date") {  // the whole day, from its first second to its last (UTC)
    return `${input.value}T${name === "endTimestamp" ? "23:59:59" : "00:00:00"}Z`;
  }
  return Number(input.value);
}

function readSplit() {
  const split = {};
  for (const name of panel.splits) {
    const percent = Number($(`ds-split-${name}`).value || 0);
    if (percent !== 0) split[name] = percent / 100;  // 0: no such split
  }
  return split;
}

function requestBody() {
  const body = {concepts: [...panel.concepts]};
  if ($("ds-descendants").checked) body.descendants = true;
  body.label = $("ds-label").value;
  const filters = readFilters();
  if (Object.keys(filters).length) body.filters = filters;
  body.split = readSplit();
  body.crop = cropOptions(PREFIX);
  body.formats = [...$("ds-formats").querySelectorAll("input:checked")].map((box) => box.value);
  const most = $("ds-max-boxes").value.trim();
  if (most) body.max_boxes = Number(most);
  return body;
}

// The form set from a job's request as the service understood it (every field there), for a shared job.
function fillForm(request) {
  panel.concepts = [...request.concepts];
  renderConcepts();
  $("ds-descendants").checked = request.descendants;
  $("ds-label").value = request.label;
  for (const input of filterInputs()) {
    const value = request.filters[input.dataset.field.slice(FILTER.length)];
    const unset = value === null || value === undefined;
    if (input.type === "checkbox") input.checked = unset ? input.defaultChecked : value;
    else if (input.type === "date") input.value = unset ? "" : value.slice(0, 10);  // the day of the time
    else input.value = unset ? "" : value;
  }
  for (const name of panel.splits) {
    $(`ds-split-${name}`).value = Math.round((request.split[name] || 0) * 10000) / 100;
  }
  setCropOptions(PREFIX, request.crop);
  for (const box of $("ds-formats").querySelectorAll("input")) box.checked = request.formats.includes(box.value);
  $("ds-max-boxes").value = request.max_boxes;
}

// The input (or inputs) here of a field the service names: "filters.minDepth", "crop.width", "concepts.0".
function inputsOf(path) {
  if (path.startsWith("crop.")) return $(PREFIX + path.slice("crop.".length));
  const form = $("dataset-form");
  const el = form.querySelector(`[data-field="${CSS.escape(path)}"]`) ||
    form.querySelector(`[data-field="${CSS.escape(path.split(".")[0])}"]`);
  return el && el.tagName === "FIELDSET" ? [...el.querySelectorAll("input")] : el;
}

// ---------------------------------------------------------------- starting a job --

async function start(event) {
  event.preventDefault();
  clearError($("ds-error"));
  clearError($("ds-concepts-error"));
  addConcept($("ds-concept").value);  // a name typed and not yet added counts
  $("ds-concept").value = "";
  if (!panel.concepts.length) {
    showError($("ds-concepts-error"), {title: "No concept", message: "Add at least one: type a name, then Enter."},
      {mark: [$("ds-concept")]});
    return;
  }
  const button = $("ds-start-button");
  button.disabled = true;
  try {
    const answer = await api.startDataset(requestBody());
    follow(answer.id);
    panel.onAddress(true);
  } catch (error) {
    if (error.code === "unknown_concept") {
      showError($("ds-concepts-error"), error, {mark: [$("ds-concept")]});
      offerSuggestions(error);
    } else {
      showError($("ds-error"), error, {inputOf: inputsOf});
    }
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- following a job --

function follow(id, {fill = false} = {}) {
  stopFollowing();
  const mine = ++panel.following;
  if (jobId() !== id) panel.job = {id};
  $("ds-job").hidden = false;
  $("ds-job-id").textContent = id;
  $("ds-link").href = `${location.origin}${location.pathname}?dataset=${encodeURIComponent(id)}`;
  $("ds-api-link").href = `/datasets/${encodeURIComponent(id)}`;
  if (!panel.job.status) {
    renderWaiting();
    $("ds-job").scrollIntoView({block: "nearest"});  // a new job: its progress is what to look at now
  }
  look(mine, fill);
}

function stopFollowing() {
  clearTimeout(panel.timer);
  panel.timer = null;
  panel.following++;
}

function forgetJob() {
  stopFollowing();
  panel.job = null;
  $("ds-job").hidden = true;
}

async function look(mine, fill) {
  let job;
  try {
    job = await api.getDataset(panel.job.id);
  } catch (error) {
    if (mine !== panel.following) return;
    showError($("ds-job-error"), error);
    if (error.status === 0 || error.status === 429 || error.status >= 500) {  // on the way: look again later
      again(mine, error.retryAfter ? error.retryAfter * 1000 : RETRY_MS);
    } else {  // 404, 410: nothing left to follow
      renderNothing();
    }
    return;
  }
  if (mine !== panel.following) return;
  clearError($("ds-job-error"));
  panel.job = job;
  if (fill) fillForm(job.request);
  renderJob(job);
  if (ACTIVE.includes(job.status)) again(mine, POLL_MS);
}

function again(mine, ms) {
  panel.timer = setTimeout(() => {
    if (mine === panel.following) look(mine, false);
  }, ms);
}

async function cancel() {
  const id = jobId();
  $("ds-cancel").disabled = true;
  try {
    const job = await api.cancelDataset(id);
    if (jobId() !== id) return;
    stopFollowing();
    panel.job = job;
    renderJob(job);
  } catch (error) {
    showError($("ds-job-error"), error);
  } finally {
    $("ds-cancel").disabled = false;
  }
}

// ---------------------------------------------------------------- what a job shows --

function renderWaiting() {
  $("ds-status").textContent = "Asking the service about this job…";
  $("ds-progress").hidden = false;
  $("ds-progress").removeAttribute("value");
  $("ds-progress-text").textContent = "";
  $("ds-cancel").hidden = true;
  $("ds-result").hidden = true;
}

function renderNothing() {
  $("ds-status").textContent = "";
  $("ds-progress").hidden = true;
  $("ds-progress-text").textContent = "";
  $("ds-cancel").hidden = true;
  $("ds-result").hidden = true;
}

function renderJob(job) {
  const {status, progress} = job;
  $("ds-status").textContent = statusText(job);
  renderBar(status, progress);
  $("ds-progress-text").textContent = progressText(status, progress);
  $("ds-cancel").hidden = !ACTIVE.includes(status);
  if (status === "failed") {
    showError($("ds-job-error"), {title: `The job failed (${job.error.code})`, message: job.error.message,
                                  code: job.error.code});
  }
  $("ds-result").hidden = status !== "done";
  if (status === "done") {
    renderFiles(job.files);
    renderCounts(job.counts, Object.keys(job.request.split));
  }
  if ($("ds-status").textContent !== panel.announced) {  // told once per change, not at every look
    panel.announced = $("ds-announce").textContent = $("ds-status").textContent;
  }
}

function statusText({status, progress}) {
  if (status === "queued") return "Queued: waiting for the data-set worker.";
  if (status === "running" && progress.boxes_total === null) return "Running: listing FathomNet's boxes…";
  if (status === "running") return "Running: cropping.";
  if (status === "done") return "Done: the files are ready.";
  if (status === "failed") return "Failed.";
  return "Cancelled: its partial files are gone (crops already made stay in the crop cache).";
}

// A bar with no value is Chromium's "how much is not known yet": queued, or still listing the boxes.
function renderBar(status, progress) {
  const bar = $("ds-progress");
  const total = progress.boxes_total;
  bar.hidden = !ACTIVE.includes(status) && status !== "done";
  if (total === null || total === 0) {
    bar.removeAttribute("value");
    return;
  }
  bar.max = total;
  bar.value = status === "done" ? total : progress.crops_done + progress.crops_failed;
}

function progressText(status, progress) {
  const {boxes_total: total, crops_done: done, crops_failed: failed, images_downloaded: images} = progress;
  if (total === null) return "";
  const parts = [`${done.toLocaleString("en")} of ${total.toLocaleString("en")} crops made`];
  if (failed) parts.push(`${failed.toLocaleString("en")} failed (failures.csv says why)`);
  parts.push(`${images.toLocaleString("en")} image${images === 1 ? "" : "s"} downloaded`);
  if (status === "running" && progress.eta_seconds !== undefined) {
    parts.push(`about ${duration(progress.eta_seconds)} left`);
  }
  return parts.join(" · ");
}

function duration(seconds) {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// The files with what tells them apart: format, and a WebDataset shard's split and samples.
function renderFiles(files) {
  $("ds-files").replaceChildren(...files.map((file) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = file.url;
    link.textContent = file.name;
    const facts = document.createElement("span");
    const samples = file.samples === undefined ? null : `${file.samples.toLocaleString("en")} samples`;
    const size = `${api.formatBytes(file.size)} (${file.size.toLocaleString("en")} bytes)`;
    facts.textContent = ` ${[file.format, file.split, samples, size].filter(Boolean).join(" · ")}`;
    const sha = document.createElement("code");
    sha.className = "sha";
    sha.textContent = `sha256 ${file.sha256}`;
    item.append(link, facts, sha);
    return item;
  }));
}

// Labels down, the splits asked across (the service's order: one no image fell in shows its 0s), with totals.
function renderCounts(counts, asked) {
  const splits = [...new Set([...panel.splits.filter((s) => asked.includes(s)), ...Object.keys(counts)])];
  const labels = [...new Set(splits.flatMap((s) => Object.keys(counts[s] || {})))].sort();
  const cell = (tag, text, scope) => {
    const el = document.createElement(tag);
    el.textContent = typeof text === "number" ? text.toLocaleString("en") : text;
    if (scope) el.scope = scope;
    return el;
  };
  const row = (name, values) => {
    const tr = document.createElement("tr");
    tr.append(cell("th", name, "row"), ...values.map((v) => cell("td", v)), cell("td", sum(values)));
    return tr;
  };
  const head = document.createElement("tr");
  head.append(cell("th", "Label", "col"), ...splits.map((s) => cell("th", s, "col")), cell("th", "All", "col"));
  $("ds-counts").tHead.replaceChildren(head);
  $("ds-counts").tBodies[0].replaceChildren(
    ...labels.map((label) => row(label, splits.map((s) => counts[s]?.[label] || 0))),
    row("All", splits.map((s) => sum(Object.values(counts[s] || {})))));
}

const sum = (numbers) => numbers.reduce((a, b) => a + b, 0);

// ---------------------------------------------------------------- setting up --

// The split and format choices, from the service's description.
function buildChoices({formats, defaultFormats, splits, defaultSplit}) {
  panel.splits = splits;
  for (const name of splits) {
    const label = document.createElement("label");
    label.textContent = name;
    const input = document.createElement("input");
    Object.assign(input, {id: `ds-split-${name}`, type: "number", min: 0, max: 100, step: "any",
                          value: Math.round((defaultSplit[name] || 0) * 10000) / 100});
    label.append(input);
    $("ds-split").append(label);
  }
  for (const name of formats) {
    const label = document.createElement("label");
    label.className = "check";
    const box = document.createElement("input");
    Object.assign(box, {type: "checkbox", value: name, checked: defaultFormats.includes(name)});
    label.append(box, ` ${name}`);
    $("ds-formats").append(label);
  }
  $("ds-start-button").disabled = false;
}

// onAddress(push): called when the panel changes what the address should hold. Resolves once the
// choices the service describes are in the form.
export function setupDatasetPanel({onAddress}) {
  panel.onAddress = onAddress;
  // Open at once where the address asks, to be filled in while the description comes; the job in the
  // address is followed once the page reads it (applyAddress).
  setOpen(new URLSearchParams(location.search).has("dataset"));
  $("ds-formats").before(copyOptionControls($("crop-options"), PREFIX, "Crops"));
  for (const name of ["width", "height", "fit"]) {
    $(PREFIX + name).addEventListener("input", () => updateFitControls(PREFIX));
  }
  updateFitControls(PREFIX);
  $("dataset-toggle").addEventListener("click", () => {
    setOpen(!isOpen());
    if (isOpen()) {
      if (jobId()) follow(jobId());
      $("ds-concept").focus();
    }
    onAddress(false);
  });
  $("ds-concept").addEventListener("input", onConceptInput);
  $("ds-concept").addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !$("ds-concept").value.trim()) return;  // Enter on an empty field: the form's
    event.preventDefault();
    addConcept($("ds-concept").value);
    $("ds-concept").value = "";
  });
  $("ds-add-concept").addEventListener("click", () => {
    addConcept($("ds-concept").value);
    $("ds-concept").value = "";
    $("ds-concept").focus();
  });
  $("dataset-form").addEventListener("submit", start);
  $("ds-cancel").addEventListener("click", cancel);
  return api.datasetChoices().then(buildChoices);
}
