// Errors told next to what caused them: a heading, the service's own words, and the fields it names marked.

import {describe} from "./api.js";

// inputOf(field): the input (or inputs) the service's field name ("limit", "filters.minDepth") stands for here.
export function showError(el, error, {mark = [], inputOf = (field) => document.getElementById(field)} = {}) {
  const {title, message, hint, fields} = error.title ? error : describe(error);
  el.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = title;
  const text = document.createElement("p");
  text.textContent = [message, hint].filter(Boolean).join(" ");
  el.append(strong, text);
  if (fields && fields.length) {
    const list = document.createElement("ul");
    for (const {field, text: words} of fields) {
      const item = document.createElement("li");
      item.textContent = field === "_schema" ? words : `${field}: ${words}`;
      list.append(item);
      for (const input of [].concat(inputOf(field) || [])) input.setAttribute("aria-invalid", "true");
    }
    el.append(list);
  }
  for (const input of mark) input.setAttribute("aria-invalid", "true");
  el.dataset.code = error.code || "";
  el.hidden = false;
  el.scrollIntoView({block: "nearest"});  // e.g. a crop asked from the image, its error by the fields
}

// Hides the error and unmarks the fields of its form or section.
export function clearError(el) {
  el.hidden = true;
  el.replaceChildren();
  for (const input of el.closest("form, section")?.querySelectorAll("[aria-invalid]") || []) {
    input.removeAttribute("aria-invalid");
  }
}
