// The crop options (format, padding, square, size, fit, background): one set of controls in the HTML,
// read as the service spells them. The data-set panel gets a copy of them with its own ids, so the two
// never drift apart.

const $ = (id) => document.getElementById(id);

// The options of the controls whose ids start with prefix; defaults are left out, so the request stays short.
export function cropOptions(prefix = "") {
  const field = (name) => $(prefix + name);
  const o = {format: field("format").value};
  const pad = field("pad").value.trim();
  if (pad !== "" && Number(pad) !== 0) o.pad = field("pad-unit").value === "%" ? `${pad}%` : Number(pad);
  if (field("square").checked) o.square = true;
  const width = field("width").value.trim();
  const height = field("height").value.trim();
  if (width) o.width = Number(width);
  if (height) o.height = Number(height);
  if (width && height && field("fit").value !== "contain") o.fit = field("fit").value;
  if (o.fit === "letterbox" && field("background").value !== "#000000") o.background = field("background").value;
  return o;
}

// The controls set from options as the service answers them (a job's request as understood: every option).
export function setCropOptions(prefix, o) {
  const field = (name) => $(prefix + name);
  if (o.format) field("format").value = o.format;
  const pad = o.pad === null || o.pad === undefined ? "" : String(o.pad);
  field("pad").value = pad.replace("%", "") || "0";
  field("pad-unit").value = pad.endsWith("%") ? "%" : "px";
  field("square").checked = Boolean(o.square);
  field("width").value = o.width ?? "";
  field("height").value = o.height ?? "";
  field("fit").value = o.fit || "contain";
  field("background").value = /^#[0-9a-f]{6}$/i.test(o.background || "") ? o.background : "#000000";
  updateFitControls(prefix);
}

// Fit means something only with both a width and a height; a background only for letterbox.
export function updateFitControls(prefix = "") {
  const field = (name) => $(prefix + name);
  const both = field("width").value.trim() !== "" && field("height").value.trim() !== "";
  field("fit").disabled = !both;
  field("background-label").hidden = !(both && field("fit").value === "letterbox");
}

// A copy of the fieldset whose ids, label targets and descriptions all carry prefix.
export function copyOptionControls(fieldset, prefix, legend) {
  const copy = fieldset.cloneNode(true);
  for (const el of [copy, ...copy.querySelectorAll("*")]) {
    for (const attribute of ["id", "for", "aria-describedby", "name"]) {
      if (el.hasAttribute(attribute)) el.setAttribute(attribute, prefix + el.getAttribute(attribute));
    }
  }
  copy.querySelector("legend").textContent = legend;
  return copy;
}
