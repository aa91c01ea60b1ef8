// The service's public HTTP API, as a lab tool uses it, and what the page says about its errors.

export class ApiError extends Error {
  constructor(status, code, message, details, retryAfter) {
    super(message);
    this.status = status;          // 0: the service could not be reached at all
    this.code = code;              // the service's error.code
    this.details = details || {};  // e.g. marshmallow's messages per field for a 422
    this.retryAfter = retryAfter;  // seconds, from Retry-After (429, 503)
  }
}

// Every error the service (app, nginx or Gunicorn) sends is {"error": {"code", "message", "details"}};
// anything else (a proxy's HTML page, a network failure) still becomes an ApiError with words in it.
export async function call(method, path, body) {
  const init = {method, headers: {Accept: "application/json"}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "unreachable", "The service could not be reached. Check the connection and try again.");
  }
  const text = await response.text();
  let data = null;
  try { data = JSON.parse(text); } catch { /* not JSON: described below */ }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const retry = response.headers.get("Retry-After");
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || `The service answered ${response.status} ${response.statusText}.`,
      error.details, retry === null ? null : Number(retry));
  }
  if (data === null) throw new ApiError(response.status, "not_json", "The service answered something that is not JSON.");
  return data;
}

// The service's description, asked once for the whole page (again after a failure).
let described = null;
function schemas() {
  described ??= call("GET", "/openapi.json").catch((error) => { described = null; throw error; });
  return described.then((description) => description.components.schemas);
}

// The formats the service makes, and its default: read from its description, never copied into the page.
export async function outputFormats() {
  const all = await schemas();
  return {names: all.CropAnswer.properties.format.enum, default: all.CropRequest.properties.format.default};
}

// What a data set may be written as, and its splits, with their defaults: from the description too.
export async function datasetChoices() {
  const {formats, split} = (await schemas()).DatasetRequest.properties;
  return {formats: formats.items.enum, defaultFormats: formats.default, splits: Object.keys(split.properties),
          defaultSplit: split.default};
}

export const getBoxes = (uuid) => call("GET", `/images/${encodeURIComponent(uuid)}/boxes`);
export const crop = (body) => call("POST", "/cropper/", body);
export const cropList = (body) => call("POST", "/cropper-list/", body);
export const cropConcept = (body) => call("POST", "/cropper-concept/", body);
export const startDataset = (body) => call("POST", "/datasets", body);
export const getDataset = (id) => call("GET", `/datasets/${encodeURIComponent(id)}`);
export const cancelDataset = (id) => call("DELETE", `/datasets/${encodeURIComponent(id)}`);
export const conceptNames = (prefix, limit) =>
  call("GET", `/concepts?${new URLSearchParams({prefix, limit})}`);

// A heading per status, so a person knows whose fault it is and what to do; the service's own
// message (which names the uuid, the box or the limit) follows it.
const TITLES = {
  0: "Service unreachable",
  400: "Bad request",
  404: "Not found",
  413: "Too large",
  415: "Bad request",
  422: "Cannot crop this",
  429: "Too many requests",
  502: "FathomNet is not answering properly",
  503: "The service is busy",
  504: "FathomNet took too long",
  507: "The crop store is full",
};

// Where the status alone would mislead (a 422 that is not about a crop, a 429 that is the job queue's).
const CODE_TITLES = {
  validation_error: "Check the fields",
  service_unavailable: "The service is down",
  unknown_concept: "Unknown concept",
  too_many_jobs: "Too many data-set jobs waiting",
  dataset_not_found: "No such data set",
  dataset_gone: "This data set is gone",
};

// marshmallow's details for a 422: {"field": ["message", ...]}, nested for nested fields
// ({"filters": {"minDepth": [...]}}) -> [{field: "filters.minDepth", text}], in the order given.
function fieldMessages(details, prefix = "") {
  const fields = [];
  for (const [name, messages] of Object.entries(details)) {
    const field = prefix + name;
    if (messages && typeof messages === "object" && !Array.isArray(messages)) {
      fields.push(...fieldMessages(messages, `${field}.`));
    } else {
      fields.push({field, text: [].concat(messages).join(" ")});
    }
  }
  return fields;
}

export function describe(error) {
  if (!(error instanceof ApiError)) {
    return {title: "Something went wrong", message: String(error && error.message || error), hint: "", fields: []};
  }
  const title = CODE_TITLES[error.code] || TITLES[error.status] || `Error ${error.status}`;
  let hint = "";
  if (error.status === 429 || error.status === 503) {
    hint = error.retryAfter ? `Wait ${error.retryAfter} s, then try again.` : "Wait a moment, then try again.";
  } else if (error.status === 502 || error.status === 504) {
    hint = "This is on FathomNet's side: try again later.";
  } else if (error.status === 507) {
    hint = "Crops already made still work; tell the service's operator.";
  }
  const fields = error.code === "validation_error" ? fieldMessages(error.details) : [];
  const status = error.status ? `${error.status} ${error.code}` : error.code;
  return {title: `${title} (${status})`, message: error.message, hint, fields};
}

// Python's spelling of a JSON value (True, False, None), for the lab-tool snippet.
function pythonLiteral(value) {
  if (value === true) return "True";
  if (value === false) return "False";
  if (value === null) return "None";
  if (Array.isArray(value)) return `[${value.map(pythonLiteral).join(", ")}]`;
  if (typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pythonLiteral(v)}`).join(", ")}}`;
  }
  return JSON.stringify(value);
}

// The same request a lab tool would send, runnable as is.
export function snippets(path, body) {
  const url = new URL(path, window.location.href).href;
  const json = JSON.stringify(body).replaceAll("'", "'\\''");  // inside single quotes for the shell
  const curl = `curl -s -X POST '${url}' -H 'Content-Type: application/json' -d '${json}'`;
  const python = [
    "import requests",
    `crop = requests.post("${url}", json=${pythonLiteral(body)}, timeout=60).json()`,
    'print(crop["url"], crop["width"], crop["height"])',
  ].join("\n");
  return {curl, python};
}

// The CSV /cropper-concept/ answers with Accept: text/csv, built from JSON answers (crops made only).
export const CSV_COLUMNS = ["url", "label", "box_uuid", "image_uuid", "x1", "y1", "x2", "y2"];

// Text a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading ', as OWASP
// recommends and as the service's own CSV does (cropper/spreadsheets.py); numbers stay numbers.
const FORMULA_START = /^[=+\-@\t\r]/;

function csvField(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (typeof value !== "number" && FORMULA_START.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;  // as Python's csv module quotes
}

export function toCsv(answers) {
  const rows = [CSV_COLUMNS];
  for (const a of answers) {
    if (a.url) rows.push([a.url, a.concept || "", a.box_uuid || "", a.uuid, ...a.region]);
  }
  return rows.map((row) => row.map(csvField).join(",")).join("\n") + "\n";
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}
