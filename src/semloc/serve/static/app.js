// The semloc web page: posts one (text, image) to /predict?explain=true and draws the answer.
// Plain JS + canvas, no libraries: the page must work on a machine without internet.
"use strict";

const $ = (id) => document.getElementById(id);
let lastImage = null; // the decoded photo of the last prediction (an HTMLImageElement)
let lastExplanation = null;

function fmt(x, digits = 3) {
  return x === null || x === undefined ? "n/a (this model has none)" : Number(x).toFixed(digits);
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// a perceptually ordered blue -> yellow -> red ramp; t in [0, 1]
function heatColor(t) {
  const stops = [
    [0.0, [49, 54, 149]],
    [0.25, [69, 117, 180]],
    [0.5, [255, 255, 191]],
    [0.75, [244, 109, 67]],
    [1.0, [165, 0, 38]],
  ];
  for (let i = 1; i < stops.length; i++) {
    if (t <= stops[i][0]) {
      const [t0, c0] = stops[i - 1];
      const [t1, c1] = stops[i];
      const u = (t - t0) / (t1 - t0);
      return c0.map((c, k) => Math.round(c + u * (c1[k] - c)));
    }
  }
  return stops[stops.length - 1][1];
}

function renderBars(probabilities, best) {
  const list = $("bars");
  list.replaceChildren();
  const entries = Object.entries(probabilities).sort((a, b) => b[1] - a[1]);
  for (const [label, p] of entries) {
    const item = document.createElement("li");
    item.className = label === best ? "best" : "";
    item.dataset.label = label;
    const name = document.createElement("span");
    name.className = "bar-label";
    name.textContent = label;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = `${(100 * p).toFixed(1)}%`;
    item.append(name, track, value);
    list.appendChild(item);
  }
}

// The photo region CLIP sees (crop box from the server), with the patch grid on top.
function drawHeatmap() {
  const canvas = $("heatmap");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!lastImage) return;
  const ex = lastExplanation;
  const crop = ex
    ? ex.crop
    : (() => {
        // no explanation: show CLIP's center square anyway
        const s = Math.min(lastImage.naturalWidth, lastImage.naturalHeight);
        return { x: (lastImage.naturalWidth - s) / 2, y: (lastImage.naturalHeight - s) / 2, width: s, height: s };
      })();
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(lastImage, crop.x, crop.y, crop.width, crop.height, 0, 0, canvas.width, canvas.height);
  if (!ex || !$("overlay").checked) return;
  const grid = ex.grid_size;
  const values = ex.patch_similarity.flat();
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi - lo || 1;
  // one pixel per patch, scaled up with smoothing so the map reads as a field, not a mosaic
  const small = document.createElement("canvas");
  small.width = grid;
  small.height = grid;
  const sctx = small.getContext("2d");
  const img = sctx.createImageData(grid, grid);
  values.forEach((v, i) => {
    const [r, g, b] = heatColor((v - lo) / span);
    img.data.set([r, g, b, 255], 4 * i);
  });
  sctx.putImageData(img, 0, 0);
  ctx.globalAlpha = 0.5;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 1.0;
  $("legend-min").textContent = lo.toFixed(2);
  $("legend-max").textContent = hi.toFixed(2);
}

function render(res) {
  $("label").textContent = res.predicted_label;
  $("label-prob").textContent = `(${(100 * res.probabilities[res.predicted_label]).toFixed(1)}%)`;
  renderBars(res.probabilities, res.predicted_label);
  $("similarity").textContent = fmt(res.similarity);
  $("gate").textContent = fmt(res.gate);
  const w = res.modality_weights;
  $("weights").textContent = w ? `text ${fmt(w.text, 2)} / image ${fmt(w.image, 2)}` : fmt(null);
  const outcome = res.image.outcome;
  $("image-outcome").textContent =
    outcome === "present" ? "used" : outcome === "no_image" ? "none given" : `not used (${outcome})`;
  lastExplanation = res.explanation || null;
  $("explain-note").textContent = res.explanation_note || "";
  $("heatmap-figure").hidden = !lastImage;
  drawHeatmap();
  $("result").hidden = false;
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this image"));
    img.src = url;
  });
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const button = $("submit");
  const form = new FormData();
  form.append("text", $("text").value);
  const file = $("image").files[0];
  if (file) form.append("image", file, file.name);
  button.disabled = true;
  $("status").textContent = "predicting…";
  try {
    const response = await fetch("/predict?explain=true", { method: "POST", body: form });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
      throw new Error(message);
    }
    lastImage = null;
    if (file) {
      try {
        lastImage = await loadImage(file);
      } catch (e) {
        lastImage = null; // the server read it, the browser cannot draw it: show numbers only
      }
    }
    render(body);
    $("status").textContent = "done";
  } catch (e) {
    $("status").textContent = "";
    showError(`Could not predict: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

async function showModelInfo() {
  try {
    const health = await (await fetch("/health")).json();
    $("model-info").textContent =
      `model ${health.model} · ${health.num_classes} classes · CLIP ${health.backbone.name}`;
  } catch (e) {
    $("model-info").textContent = "";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("post-form").addEventListener("submit", submit);
  $("overlay").addEventListener("change", drawHeatmap);
  showModelInfo();
});
