// The deep-zoom view of one image (OpenSeadragon over the service's IIIF tiles), its annotations
// as overlays, and the box being cropped: drawn, moved by its corner handles, or set from the fields.

/* global OpenSeadragon */

const Point = (x, y) => new OpenSeadragon.Point(x, y);

export class Viewer {
  constructor({element, layer, selection, region, onActivate, onHover, onSelection}) {
    this.layer = layer;            // over the viewer: catches pointers only while drawing
    this.selectionEl = selection;  // the box being cropped, with its handles
    this.regionEl = region;        // what the last crop cut (with padding, squared)
    this.onActivate = onActivate;  // (box_uuid) an annotation was clicked or pressed
    this.onHover = onHover;        // (box_uuid or null) pointer or focus on an annotation
    this.onSelection = onSelection;  // ([x1, y1, x2, y2], final, "draw" or "handle") the box was drawn or moved
    this.size = null;              // the open image's [width, height]
    this.selection = null;
    this.region = null;
    this.drag = null;
    this.drawing = false;
    this.osd = OpenSeadragon({
      element,
      prefixUrl: "/static/vendor/openseadragon/images/",
      drawer: "canvas",  // plain 2D canvas: WebGL needs a GPU or a software fallback browsers are dropping
      gestureSettingsMouse: {clickToZoom: false},  // a click selects an annotation; the wheel zooms
      showRotationControl: false,
      visibilityRatio: 0.5,
      maxZoomPixelRatio: 4,
    });
    // Rotation and flipping (r, f) would turn the image under axis-aligned boxes: not offered.
    this.osd.addHandler("canvas-key", (event) => {
      if (["KeyR", "KeyF"].includes(event.originalEvent.code)) event.preventDefaultAction = true;
    });
    // OpenSeadragon captures the pointer on its canvas, so clicks on overlays arrive here.
    this.osd.addHandler("canvas-click", (event) => {
      const target = event.originalTarget && event.originalTarget.closest && event.originalTarget.closest(".annotation");
      if (event.quick && target) this.onActivate(target.dataset.box);
    });
    this.osd.addHandler("update-viewport", () => this.place());
    this.osd.addHandler("resize", () => this.place());
    this.listenToLayer();
  }

  open(uuid) {
    return new Promise((resolve, reject) => {
      const settle = (then) => (event) => {  // whichever comes first; neither is left behind for the next open
        this.osd.removeHandler("open", opened);
        this.osd.removeHandler("open-failed", failed);
        then(event);
      };
      const opened = settle(() => resolve());
      const failed = settle((event) => reject(new Error(event.message)));
      this.osd.addHandler("open", opened);
      this.osd.addHandler("open-failed", failed);
      this.osd.open(`/iiif/3/${encodeURIComponent(uuid)}/info.json`);  // tiles only, never the original
    });
  }

  setImage(width, height) {
    this.size = [width, height];
  }

  // Annotations as focusable overlays; the largest first, so smaller ones inside them stay clickable.
  setAnnotations(boxes) {
    this.osd.clearOverlays();
    this.labelled = [];  // [annotation element, its region in image pixels]
    const drawn = boxes.filter((b) => b.region).sort((a, b) => area(b.region) - area(a.region));
    for (const b of drawn) {
      const [x1, y1, x2, y2] = b.region;
      const el = document.createElement("div");
      el.className = "annotation";
      el.dataset.box = b.box_uuid;
      el.tabIndex = 0;
      el.setAttribute("role", "button");
      el.setAttribute("aria-label", `${b.concept}, ${describeBox(b)}`);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = b.concept;
      const details = document.createElement("span");
      details.className = "details";
      details.textContent = `${b.concept} · ${describeBox(b)} · box ${b.box.join(", ")}`;
      el.append(label, details);
      el.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          event.stopPropagation();  // not also a key for OpenSeadragon
          this.onActivate(b.box_uuid);
        }
      });
      el.addEventListener("pointerenter", () => this.onHover(b.box_uuid));
      el.addEventListener("pointerleave", () => this.onHover(null));
      el.addEventListener("focus", () => this.onHover(b.box_uuid));
      el.addEventListener("blur", () => this.onHover(null));
      this.osd.addOverlay({element: el, location: this.osd.viewport.imageToViewportRectangle(x1, y1, x2 - x1, y2 - y1)});
      this.labelled.push([el, b.region]);
    }
    this.place();
  }

  annotationElements() {
    return [...this.osd.element.querySelectorAll(".annotation")];
  }

  mark(boxUuid, className, on) {  // boxUuid null: unmark all
    for (const el of this.annotationElements()) el.classList.toggle(className, on && el.dataset.box === boxUuid);
  }

  showOnly(visible) {  // visible: a Set of box uuids, or null for all
    for (const el of this.annotationElements()) el.hidden = visible !== null && !visible.has(el.dataset.box);
  }

  setSelection(coords) {
    this.selection = coords;
    this.place();
  }

  setRegion(region) {
    this.region = region;
    this.place();
  }

  setDrawMode(on) {
    this.drawing = on;
    this.layer.classList.toggle("drawing", on);
  }

  // Boxes in image pixels placed in viewer pixels, every time the view moves.
  place() {
    for (const [el, box] of [[this.selectionEl, this.selection], [this.regionEl, this.region]]) {
      el.hidden = !box || !this.size || !this.osd.world.getItemAt(0);
      if (el.hidden) continue;
      const a = this.osd.viewport.imageToViewerElementCoordinates(Point(box[0], box[1]));
      const b = this.osd.viewport.imageToViewerElementCoordinates(Point(box[2], box[3]));
      Object.assign(el.style, {left: `${a.x}px`, top: `${a.y}px`, width: `${b.x - a.x}px`, height: `${b.y - a.y}px`});
    }
    // A label goes above its box, or inside it where the viewer's top edge would cut it off; it and the
    // details slide sideways where an edge would (a phone's narrow viewer cuts many at its right edge).
    const width = this.osd.container.clientWidth;
    for (const [el, [x1, y1, x2]] of this.labelled || []) {
      const a = this.osd.viewport.imageToViewerElementCoordinates(Point(x1, y1));
      const right = this.osd.viewport.imageToViewerElementCoordinates(Point(x2, y1)).x;
      el.classList.toggle("label-inside", a.y < el.querySelector(".label").offsetHeight);
      for (const text of el.querySelectorAll(".label, .details")) keepInside(text, a.x, right, width);
    }
  }

  // A pointer's position as whole image pixels inside the image.
  toImage(event) {
    const rect = this.osd.element.getBoundingClientRect();
    const p = this.osd.viewport.viewerElementToImageCoordinates(Point(event.clientX - rect.left, event.clientY - rect.top));
    return [clamp(Math.round(p.x), 0, this.size[0]), clamp(Math.round(p.y), 0, this.size[1])];
  }

  listenToLayer() {
    // Drawing starts on the layer (only reachable in draw mode); moving a corner starts on its handle.
    this.layer.addEventListener("pointerdown", (event) => {
      if (!this.size || event.button !== 0) return;
      const handle = event.target.closest(".handle");
      if (handle && this.selection) {
        const [x1, y1, x2, y2] = this.selection;
        const corner = handle.dataset.corner;  // the opposite corner stays where it is
        this.drag = {kind: "handle", fixed: [corner.includes("w") ? x2 : x1, corner.includes("n") ? y2 : y1]};
      } else if (this.drawing) {
        this.drag = {kind: "draw", fixed: this.toImage(event)};
      } else {
        return;
      }
      event.preventDefault();
      event.stopPropagation();
      (handle || this.layer).setPointerCapture(event.pointerId);
      this.drag.pointerId = event.pointerId;
    });
    const move = (event, final) => {
      if (!this.drag || event.pointerId !== this.drag.pointerId) return;
      const {kind, fixed: [fx, fy]} = this.drag;
      const [px, py] = this.toImage(event);
      const box = [Math.min(fx, px), Math.min(fy, py), Math.max(fx, px), Math.max(fy, py)];
      if (final) this.drag = null;
      if (box[2] - box[0] < 1 || box[3] - box[1] < 1) return;  // a click, not a box
      this.setSelection(box);
      this.onSelection(box, final, kind);
    };
    this.layer.addEventListener("pointermove", (event) => move(event, false));
    this.layer.addEventListener("pointerup", (event) => move(event, true));
    this.layer.addEventListener("pointercancel", () => { this.drag = null; });
    // While drawing, the layer hides the viewer from the wheel: zoom here as OpenSeadragon would.
    this.layer.addEventListener("wheel", (event) => {
      if (!this.drawing) return;
      event.preventDefault();
      const rect = this.osd.element.getBoundingClientRect();
      const at = this.osd.viewport.pointFromPixel(Point(event.clientX - rect.left, event.clientY - rect.top));
      this.osd.viewport.zoomBy(event.deltaY < 0 ? 1.2 : 1 / 1.2, at);
      this.osd.viewport.applyConstraints();
    }, {passive: false});
  }
}

// A box's text moved as little as it must to lie inside the viewer (its start first, where both edges
// cut it), while its box is in view: a box panned out of view keeps its label beside it, out of view too.
function keepInside(text, left, right, width) {
  text.style.maxWidth = `${width}px`;  // longer: a label is cut short (…), the details wrap
  const start = left + text.offsetLeft;  // offsetLeft: the text's own place, before any shift
  const inView = right > 0 && left < width;
  const shift = inView ? Math.max(-start, Math.min(0, width - (start + text.offsetWidth))) : 0;
  text.style.transform = shift ? `translateX(${shift}px)` : "";
}

function area([x1, y1, x2, y2]) {
  return (x2 - x1) * (y2 - y1);
}

function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}

export function describeBox(b) {
  const [x1, y1, x2, y2] = b.region || b.box;
  const review = (b.review || "unreviewed").toLowerCase();
  return `${x2 - x1}×${y2 - y1} px, ${review}${b.region ? "" : ", outside the image"}`;
}
