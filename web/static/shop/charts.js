// Small inline SVG charts drawn from data (no library): a line chart of series over time
// and horizontal bars. Each chart is an <svg role="img"> with a title for screen readers.

const SVG = "http://www.w3.org/2000/svg";
export const COLORS = ["#1f5fbf", "#d9822b", "#1b7a3a", "#8e44ad", "#b3261e"];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function shortTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/**
 * A line chart: points [{at, <key>: number}], lines [{key, label, color}].
 * Returns an <svg> element (viewBox scaled to its container's width by CSS).
 */
export function lineChart(points, lines, { title = "", width = 480, height = 180, format = String } = {}) {
  const pad = { left: 40, right: 10, top: 12, bottom: 22 };
  const w = width - pad.left - pad.right;
  const hgt = height - pad.top - pad.bottom;
  const max = Math.max(1, ...points.flatMap((p) => lines.map((l) => Number(p[l.key]) || 0)));
  const x = (i) => pad.left + (points.length <= 1 ? w / 2 : (i * w) / (points.length - 1));
  const y = (v) => pad.top + hgt - (v / max) * hgt;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  svg.append(s("title", {}, title));
  const ticks = max >= 4 ? [0, Math.round(max / 2), max] : [0, max];
  for (const tick of ticks) {
    const yy = y(tick);
    svg.append(s("line", { x1: pad.left, x2: width - pad.right, y1: yy, y2: yy, stroke: "#e3e6ec" }));
    svg.append(s("text", { x: pad.left - 4, y: yy + 3, "text-anchor": "end" }, format(tick)));
  }
  if (points.length) {
    svg.append(s("text", { x: pad.left, y: height - 6 }, shortTime(points[0].at)));
    svg.append(s("text", { x: width - pad.right, y: height - 6, "text-anchor": "end" }, shortTime(points[points.length - 1].at)));
  }
  lines.forEach((line, index) => {
    const color = line.color || COLORS[index % COLORS.length];
    const coords = points.map((p, i) => `${x(i).toFixed(1)},${y(Number(p[line.key]) || 0).toFixed(1)}`);
    if (coords.length === 1) coords.push(coords[0]);
    svg.append(s("polyline", { points: coords.join(" "), fill: "none", stroke: color, "stroke-width": 2, "data-series": line.key }));
    points.forEach((p, i) => svg.append(s("circle", { cx: x(i), cy: y(Number(p[line.key]) || 0), r: 2, fill: color })));
  });
  return svg;
}

/** Horizontal bars: items [{label, value}]. */
export function barChart(items, { title = "", width = 480, color = COLORS[0], format = String } = {}) {
  const row = 22;
  const labelWidth = 130;
  const height = Math.max(row, items.length * row) + 6;
  const max = Math.max(1, ...items.map((i) => Number(i.value) || 0));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  svg.append(s("title", {}, title));
  items.forEach((item, i) => {
    const y = 3 + i * row;
    const barWidth = ((Number(item.value) || 0) / max) * (width - labelWidth - 60);
    svg.append(s("text", { x: labelWidth - 6, y: y + 14, "text-anchor": "end" }, String(item.label).slice(0, 22)));
    svg.append(s("rect", { x: labelWidth, y: y + 3, width: Math.max(barWidth, 1), height: row - 8, rx: 3, fill: color }));
    svg.append(s("text", { x: labelWidth + barWidth + 6, y: y + 14 }, format(item.value)));
  });
  return svg;
}

export function legend(lines) {
  const el = document.createElement("div");
  el.className = "legend";
  lines.forEach((line, index) => {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = line.color || COLORS[index % COLORS.length];
    item.append(swatch, line.label);
    el.append(item);
  });
  return el;
}
