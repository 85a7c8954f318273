// Small inline-SVG line charts (sparklines) of the samples the dashboard takes.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 120;
const HEIGHT = 28;

export function sparkline(label) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("width", WIDTH);
  svg.setAttribute("height", HEIGHT);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const area = document.createElementNS(SVG, "polygon");
  area.setAttribute("class", "spark-area");
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("class", "spark-line");
  const title = document.createElementNS(SVG, "title");
  svg.append(title, area, line);
  return svg;
}

// Draw `values` (oldest first) scaled to the largest; the title says the range.
export function draw(svg, values, unit) {
  const [area, line] = [svg.querySelector("polygon"), svg.querySelector("polyline")];
  if (values.length < 2) {
    line.setAttribute("points", "");
    area.setAttribute("points", "");
    svg.querySelector("title").textContent = "collecting samples";
    return;
  }
  const top = Math.max(...values, 1e-9);
  const step = WIDTH / (values.length - 1);
  const points = values.map((v, i) => {
    const y = HEIGHT - 2 - (Math.max(v, 0) / top) * (HEIGHT - 4);
    return `${(i * step).toFixed(1)},${y.toFixed(1)}`;
  });
  line.setAttribute("points", points.join(" "));
  area.setAttribute("points", `0,${HEIGHT} ${points.join(" ")} ${WIDTH},${HEIGHT}`);
  svg.querySelector("title").textContent =
    `${values.length} samples; max ${formatNumber(top)}${unit}, now ${formatNumber(values.at(-1))}${unit}`;
}

export function formatNumber(n) {
  if (!Number.isFinite(n)) return "-";
  if (Math.abs(n) >= 100 || Number.isInteger(n)) return Math.round(n).toLocaleString("en");
  return n.toFixed(1);
}
