// The Mirador page (/mirador?image=<uuid>): Mirador, vendored, opened on this service's manifest of the
// image, its FathomNet boxes drawn and listed in the annotations panel. The viewer is window.miradorViewer
// (its Redux store holds what Mirador loaded). A plain script, no inline code: the page's CSP allows none.
(function () {
  "use strict";

  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const image = (new URLSearchParams(window.location.search).get("image") || "").trim().toLowerCase();
  const failed = document.getElementById("mirador-error");

  if (!UUID.test(image)) {
    failed.textContent = "Name an image: /mirador?image=<the uuid of a FathomNet image>.";
    failed.hidden = false;
    return;
  }
  const manifest = `${window.location.origin}/iiif/manifests/${image}`;
  document.getElementById("page-link").href = `/?image=${image}`;
  const link = document.getElementById("manifest-link");
  link.href = manifest;
  link.hidden = false;

  window.miradorViewer = window.Mirador.viewer({
    id: "mirador",
    windows: [{manifestId: manifest}],
    window: {
      allowClose: false,
      allowMaximize: false,
      sideBarOpen: window.matchMedia("(min-width: 700px)").matches,  // on a phone the image first
      sideBarPanel: "annotations",
      highlightAllAnnotations: true,  // every box drawn, not only the one hovered
    },
    workspace: {type: "mosaic"},
    workspaceControlPanel: {enabled: false},  // this page shows one image
  });
})();
