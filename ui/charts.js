/** Small inline SVG charts (no library): bars of bytes per increment, a line of size over time. */
const NS = 'http://www.w3.org/2000/svg'

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  if (text !== undefined) e.textContent = text
  return e
}

/** The <svg>, its padding, the largest value and the inner size, with the value axis drawn. */
function frame(points, format, width, height, label) {
  const pad = { l: 64, r: 28, t: 8, b: 22 }
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label, width: '100%' })
  const max = Math.max(1, ...points.map((p) => p.value))
  const iw = width - pad.l - pad.r
  const ih = height - pad.t - pad.b
  axis(svg, max, format, pad, width, ih)
  return { pad, svg, max, iw, ih }
}

/**
 * `points`: [{label, value, title}]; `format` renders a value. Returns an <svg> with role img and
 * a <title> per bar (shown on hover, read by screen readers).
 */
export function barChart(points, format, { width = 560, height = 200, label = 'chart' } = {}) {
  const { pad, svg, max, iw, ih } = frame(points, format, width, height, label)
  const bw = iw / Math.max(1, points.length)
  points.forEach((p, i) => {
    const h = (p.value / max) * ih
    const r = el('rect', { x: pad.l + i * bw + bw * 0.1, y: pad.t + ih - h, width: Math.max(1, bw * 0.8), height: Math.max(0, h), fill: '#0b5cad' })
    r.appendChild(el('title', {}, `${p.title ?? p.label}: ${format(p.value)}`))
    svg.appendChild(r)
  })
  labelsX(svg, points, (i) => pad.l + i * bw + bw / 2, height)
  return svg
}

/** A line through `points` ({label, value, title}), evenly spaced. */
export function lineChart(points, format, { width = 560, height = 200, label = 'chart' } = {}) {
  const { pad, svg, max, iw, ih } = frame(points, format, width, height, label)
  const x = (i) => pad.l + (points.length < 2 ? iw / 2 : (i / (points.length - 1)) * iw)
  const y = (v) => pad.t + ih - (v / max) * ih
  svg.appendChild(el('polyline', { points: points.map((p, i) => `${x(i)},${y(p.value)}`).join(' '), fill: 'none', stroke: '#0b5cad', 'stroke-width': 2 }))
  points.forEach((p, i) => {
    const c = el('circle', { cx: x(i), cy: y(p.value), r: 3.5, fill: p.highlight ? '#f5a623' : '#0b5cad' })
    c.appendChild(el('title', {}, `${p.title ?? p.label}: ${format(p.value)}`))
    svg.appendChild(c)
  })
  labelsX(svg, points, x, height)
  return svg
}

function axis(svg, max, format, pad, width, ih) {
  for (const f of [0, 0.5, 1]) {
    const yy = pad.t + ih - f * ih
    svg.appendChild(el('line', { x1: pad.l, x2: width - pad.r, y1: yy, y2: yy, stroke: '#d7dce1' }))
    svg.appendChild(el('text', { x: pad.l - 6, y: yy + 4, 'text-anchor': 'end' }, format(max * f)))
  }
}

function labelsX(svg, points, x, height) {
  const every = Math.max(1, Math.ceil(points.length / 6))
  points.forEach((p, i) => {
    if (i % every === 0 || i === points.length - 1) svg.appendChild(el('text', { x: x(i), y: height - 6, 'text-anchor': 'middle' }, p.label))
  })
}
