// Small inline-SVG charts: lines over a shared x axis, bars, and a horizontal funnel.

const SVG = "http://www.w3.org/2000/svg";

function svgElement(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

// Draw in the chart's own pixels: the viewBox follows the element's size, so text and
// lines keep their size whatever the width of the page.
function frame(svg) {
  const width = Math.max(200, Math.round(svg.clientWidth || 640));
  const height = Math.max(60, Math.round(svg.clientHeight || 160));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  return { width, height, left: 44, right: 8, top: 8, bottom: 18 };
}

// series: [{values: [n...], color}]; labels: x labels (same length as values).
export function lineChart(svg, series, labels) {
  clear(svg);
  const f = frame(svg);
  const count = Math.max(1, labels.length);
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const x = (i) => f.left + (count === 1 ? 0.5 : i / (count - 1)) * (f.width - f.left - f.right);
  const y = (v) => f.height - f.bottom - (v / max) * (f.height - f.top - f.bottom);
  svg.appendChild(svgElement("line", { class: "axis", x1: f.left, x2: f.width - f.right,
                                       y1: y(0), y2: y(0) }));
  const top = svgElement("text", { x: 2, y: f.top + 8 });
  top.textContent = String(max);
  svg.appendChild(top);
  const step = Math.max(1, Math.ceil(count / 6));
  labels.forEach((label, i) => {
    if (i % step !== 0 && i !== count - 1) return;
    const anchor = i === count - 1 && count > 1 ? "end" : i === 0 ? "start" : "middle";
    const text = svgElement("text", { x: x(i), y: f.height - 4, "text-anchor": anchor });
    text.textContent = label;
    svg.appendChild(text);
  });
  for (const s of series) {
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg.appendChild(svgElement("polyline", { points, fill: "none", stroke: s.color,
                                             "stroke-width": 2 }));
  }
}

export function barChart(svg, values, color, format) {
  clear(svg);
  const f = frame(svg);
  const max = Math.max(1, ...values);
  const highest = Math.max(0, ...values);
  const slot = (f.width - f.left - f.right) / Math.max(1, values.length);
  const top = svgElement("text", { x: 2, y: f.top + 8 });
  top.textContent = format(highest);
  svg.appendChild(top);
  values.forEach((v, i) => {
    const h = (v / max) * (f.height - f.top - f.bottom);
    svg.appendChild(svgElement("rect", { x: f.left + i * slot + slot * 0.1,
                                         y: f.height - f.bottom - h, width: slot * 0.8,
                                         height: Math.max(0, h), fill: color }));
  });
}

// steps: [{label, value, color}]
export function funnelChart(svg, steps) {
  clear(svg);
  const f = frame(svg);
  const max = Math.max(1, ...steps.map((s) => s.value));
  const row = (f.height - 10) / steps.length;
  steps.forEach((s, i) => {
    const width = (s.value / max) * (f.width - 110);
    const y = 5 + i * row;
    svg.appendChild(svgElement("rect", { x: 70, y, width: Math.max(1, width), height: row * 0.7,
                                         fill: s.color, rx: 3 }));
    const label = svgElement("text", { x: 0, y: y + row * 0.45 });
    label.textContent = s.label;
    svg.appendChild(label);
    const value = svgElement("text", { x: 74 + width, y: y + row * 0.45 });
    const share = i === 0 || !steps[0].value ? "" :
      ` (${Math.round((100 * s.value) / steps[0].value)}%)`;
    value.textContent = `${s.value}${share}`;
    svg.appendChild(value);
  });
}
