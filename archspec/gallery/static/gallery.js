// archspec gallery: sorting and filtering the index, tabs, copy buttons, and
// zoom and pan for diagrams. Plain JavaScript, no library, no network.
"use strict";

function setupSorting(table) {
  const tbody = table.tBodies[0];
  table.querySelectorAll("th[data-type]").forEach((th, column) => {
    th.querySelector("button").addEventListener("click", () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      const numeric = th.dataset.type === "number";
      const key = (row) => row.cells[column].dataset.sort;
      const rows = Array.from(tbody.rows).sort((a, b) => {
        const x = key(a), y = key(b);
        if (x === "" || y === "") return (x === "") - (y === "");  // blanks last, either way
        const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      table.querySelectorAll("th").forEach((other) => other.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      tbody.append(...rows);
    });
  });
}

function setupFilter(input, table, counter) {
  const rows = Array.from(table.tBodies[0].rows);
  input.addEventListener("input", () => {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of rows) {
      const match = words.every((w) => row.dataset.filter.includes(w));
      row.hidden = !match;
      shown += match;
    }
    counter.textContent = `${shown} of ${rows.length} shown`;
  });
}

function setupTabs(list) {
  const tabs = Array.from(list.querySelectorAll("[role=tab]"));
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      for (const other of tabs) {
        const selected = other === tab;
        other.setAttribute("aria-selected", String(selected));
        document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
      }
    });
  }
}

function copyText(text) {
  // The Clipboard API where the page may use it; else select and copy.
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text).catch(() => copyBySelection(text));
  }
  return Promise.resolve(copyBySelection(text));
}

function copyBySelection(text) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy refused");
}

function setupCopy(button) {
  const pre = button.closest(".panel").querySelector(".code pre");
  button.addEventListener("click", () => {
    copyText(pre.textContent).then(
      () => { button.textContent = "Copied"; },
      () => { button.textContent = "Select and press Ctrl+C"; },
    ).finally(() => setTimeout(() => { button.textContent = "Copy"; }, 1500));
  });
}

function setupZoom(viewport, controls) {
  const canvas = viewport.querySelector(".diagram-canvas");
  const view = { scale: 1, x: 0, y: 0 };
  const apply = () => {
    canvas.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
  };
  const zoomAt = (factor, px, py) => {
    const scale = Math.min(8, Math.max(0.05, view.scale * factor));
    const f = scale / view.scale;
    view.x = px - (px - view.x) * f;
    view.y = py - (py - view.y) * f;
    view.scale = scale;
    apply();
  };
  const fit = () => {
    const width = canvas.offsetWidth || 1;
    view.scale = Math.min(1, viewport.clientWidth / width);
    view.x = Math.max(0, (viewport.clientWidth - width * view.scale) / 2);
    view.y = 0;
    apply();
  };
  viewport.addEventListener("wheel", (e) => {
    e.preventDefault();
    const box = viewport.getBoundingClientRect();
    zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - box.left, e.clientY - box.top);
  }, { passive: false });
  let drag = null;
  viewport.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX - view.x, y: e.clientY - view.y };
    viewport.setPointerCapture(e.pointerId);
    viewport.classList.add("dragging");
  });
  viewport.addEventListener("pointermove", (e) => {
    if (!drag) return;
    view.x = e.clientX - drag.x;
    view.y = e.clientY - drag.y;
    apply();
  });
  const stop = () => { drag = null; viewport.classList.remove("dragging"); };
  viewport.addEventListener("pointerup", stop);
  viewport.addEventListener("pointercancel", stop);
  const center = () => [viewport.clientWidth / 2, viewport.clientHeight / 2];
  const actions = {
    in: () => zoomAt(1.25, ...center()),
    out: () => zoomAt(0.8, ...center()),
    fit,
  };
  controls.querySelectorAll("[data-zoom]").forEach((b) => b.addEventListener("click", actions[b.dataset.zoom]));
  viewport.addEventListener("keydown", (e) => {
    const action = { "+": "in", "=": "in", "-": "out", "0": "fit" }[e.key];
    if (action) { actions[action](); e.preventDefault(); }
  });
  fit();
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("networks");
  if (table) {
    setupSorting(table);
    setupFilter(document.getElementById("filter"), table, document.getElementById("shown"));
  }
  document.querySelectorAll("[role=tablist]").forEach(setupTabs);
  document.querySelectorAll("button.copy").forEach(setupCopy);
  document.querySelectorAll(".diagram-viewport").forEach((viewport) => {
    setupZoom(viewport, viewport.closest("section").querySelector(".zoom-controls"));
  });
});
