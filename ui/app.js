/**
 * The `backup serve` page: a hash router over six views (timeline, browse, history, search, compare,
 * status), each a function that fetches the JSON API and builds DOM nodes. No HTML is built from
 * data (text goes through textContent), links are real links, forms real forms.
 */
import { barChart, lineChart } from './charts.js'
import { lineDiff, sideBySide } from './diff.js'

const main = document.getElementById('main')

// ---------------------------------------------------------------- helpers

/** `h('a', {href}, 'text', child…)`: an element; attributes starting with `on` are listeners. */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
    else if (k === 'class') e.className = v
    else e.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c))
  return e
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

async function api(route, params = {}, init = {}) {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.filter((x) => x !== '').forEach((x) => q.append(k, x))
    else if (v !== undefined && v !== null && v !== '') q.set(k, String(v))
  }
  const r = await fetch(`/api/${route}${q.toString() ? '?' + q : ''}`, { credentials: 'same-origin', ...init })
  const body = await r.json().catch(() => ({}))
  if (!r.ok) throw new ApiError(r.status, body.error?.code ?? 'EIO', body.error?.message ?? r.statusText)
  return body
}

const link = (route, params = {}) => {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ''))
  return `#/${route}${q.toString() ? '?' + q : ''}`
}
const fileUrl = (path, at) => `/api/file?${new URLSearchParams(at ? { path, at } : { path })}`
const archiveUrl = (path, at) => `/api/archive?${new URLSearchParams(Object.entries({ path, at }).filter(([, v]) => v))}`

function bytes(n) {
  if (n === null || n === undefined) return '–'
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024
    i++
  }
  return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${u[i]}`
}
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '–')
const nsTime = (ns) => (ns ? new Date(Number(BigInt(ns) / 1000000n)).toLocaleString() : '–')
const short = (sha) => (sha ? h('span', { class: 'mono', title: sha }, sha.slice(0, 12) + '…') : h('span', { class: 'dim' }, '–'))
const opBadge = (op) => (op ? h('span', { class: `badge ${op}` }, op) : '')

let firstView = true

/**
 * Shows a view: the title, then its content (or its error). After a navigation the focus moves to
 * the new title (as a page load would put it at the top); the first view leaves it at the document start.
 */
async function show(title, build) {
  document.title = `${title} · backup serve`
  const heading = h('h1', { tabindex: '-1' }, title)
  main.replaceChildren(heading, h('p', { class: 'dim' }, 'Loading…'))
  try {
    const content = await build()
    main.replaceChildren(heading, ...[content].flat())
  } catch (e) {
    main.replaceChildren(heading, h('p', { class: 'error', role: 'alert' }, `${e.code ?? 'error'}: ${e.message}`))
  }
  if (!firstView) heading.focus()
  firstView = false
}

let listing = null
async function incrementsList() {
  if (!listing) listing = await api('increments')
  return listing.increments
}

/** A <select> of points in time (the latest state, then every increment, newest first). */
async function pointSelect(name, value, { latest = true, label } = {}) {
  const incs = await incrementsList()
  const sel = h('select', { name, id: `sel-${name}` })
  if (latest) sel.append(h('option', { value: '' }, 'latest state'))
  for (const i of [...incs].reverse()) sel.append(h('option', { value: i.name, selected: i.name === value }, `${i.name} (${when(i.timestamp)})`))
  return h('label', { for: `sel-${name}` }, label ?? 'Point in time', sel)
}

function table(head, rows, numeric = []) {
  return h(
    'table',
    {},
    h('thead', {}, h('tr', {}, head.map((t, i) => h('th', { class: numeric.includes(i) ? 'num' : undefined, scope: 'col' }, t)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => h('td', { class: numeric.includes(i) ? 'num' : undefined }, c))))),
  )
}

/** Breadcrumbs of a folder path at a point in time. */
function crumbs(path, at) {
  const parts = path ? path.split('/') : []
  const out = [h('a', { href: link('tree', { at }) }, 'backup')]
  parts.forEach((p, i) => {
    out.push(h('span', { class: 'dim' }, '/'))
    const sub = parts.slice(0, i + 1).join('/')
    out.push(i === parts.length - 1 ? h('span', { 'aria-current': 'location' }, p) : h('a', { href: link('tree', { path: sub, at }) }, p))
  })
  return h('nav', { class: 'crumbs', 'aria-label': 'Folder' }, out)
}

// ---------------------------------------------------------------- views

async function timeline() {
  const l = await api('increments')
  listing = l
  const incs = l.increments
  const rows = [...incs].reverse().map((i, k, all) => {
    const prev = all[k + 1]
    const changes = i.newOrChanged !== undefined ? `${i.newOrChanged} new or changed` : `${i.new} new, ${i.changed} changed`
    return [
      h('a', { href: link('tree', { at: i.name }) }, i.name),
      when(i.timestamp),
      i.damaged ? h('span', { class: 'bad' }, 'damaged metadata') : i.origin ?? '–',
      h('span', {}, changes, ', ', h('span', { class: i.deleted ? 'warn' : '' }, `${i.deleted} deleted`)),
      String(i.files),
      bytes(i.bytes),
      h('span', { title: 'Bytes only this increment holds, from the catalogs (what deleting it frees; hard links can make it differ)' }, bytes(i.exclusiveBytes)),
      prev ? h('a', { href: link('diff', { from: prev.name, to: i.name }) }, 'changes') : h('span', { class: 'dim' }, 'first'),
    ]
  })
  const charts = h('div', { class: 'charts' })
  // Axis labels: the date, or the time when every increment is of one day.
  const oneDay = new Set(incs.map((i) => new Date(i.timestamp).toDateString())).size <= 1
  const axisLabel = (iso) => (oneDay ? new Date(iso).toLocaleTimeString() : new Date(iso).toLocaleDateString())
  const stamp = new Map(incs.map((i) => [i.name, i.timestamp]))
  const bars = incs.map((i) => ({ label: axisLabel(i.timestamp), title: i.name, value: i.bytes }))
  charts.append(h('figure', {}, h('figcaption', {}, 'Bytes stored by each increment'), barChart(bars, bytes, { label: 'Bytes stored by each increment' })))
  const sizesFig = h('figure', {}, h('figcaption', {}, 'Size of the tracked files at each point in time, and the mirror now'), h('p', { class: 'dim' }, 'Loading…'))
  charts.append(sizesFig)
  api('sizes')
    .then((z) => {
      const pts = z.points.map((p) => ({ label: axisLabel(stamp.get(p.increment) ?? p.timestamp), title: `${p.increment} (${p.files} files)`, value: p.bytes }))
      if (z.mirror) pts.push({ label: 'mirror', title: `mirror now (${z.mirror.files} files, tracked and untracked)`, value: z.mirror.bytes, highlight: true })
      sizesFig.replaceChildren(sizesFig.firstChild, lineChart(pts, bytes, { label: 'Size over time' }))
    })
    .catch((e) => sizesFig.replaceChildren(sizesFig.firstChild, h('p', { class: 'error' }, e.message)))
  // The bytes on disk need a walk of the whole backup (`list --detailed`): only when asked for.
  const note = h('span', { id: 'detail-note', role: 'status' })
  const count = h('button', { type: 'button', id: 'count-disk', onclick: () => {
    count.disabled = true
    note.textContent = ' Counting (a walk of the whole backup folder)…'
    api('increments', { detailed: 1 })
      .then((d) => (note.textContent = ` On disk: ${bytes(d.totalDiskBytes)} in all, the mirror ${bytes(d.mirrorDiskBytes)} (hard links counted once).`))
      .catch((e) => (note.textContent = ` Could not count the bytes on disk: ${e.message}`))
      .finally(() => (count.disabled = false))
  } }, 'Count the bytes on disk')
  const detail = h('p', { class: 'dim' }, count, note)
  const damaged = l.damaged.length ? h('p', { class: 'bad' }, `${l.damaged.length} increments have missing or damaged metadata: see Status.`) : ''
  return [
    h('p', {}, `${incs.length} increments, oldest ${incs[0]?.name ?? '–'}, newest ${incs.at(-1)?.name ?? '–'}.`),
    damaged,
    charts,
    h('h2', {}, 'Increments (newest first)'),
    table(['Increment', 'Time', 'Origin', 'Changes', 'Files', 'Bytes', 'Only here', ''], rows, [4, 5, 6]),
    detail,
  ]
}

async function tree(params) {
  const path = params.get('path') ?? ''
  const at = params.get('at') ?? ''
  const t = await api('tree', { path, at })
  const status = await api('status').catch(() => null)
  const form = h(
    'form',
    { class: 'bar', onsubmit: (ev) => {
      ev.preventDefault()
      location.hash = link('tree', { path, at: new FormData(ev.target).get('at') })
    } },
    await pointSelect('at', t.at ?? ''),
    h('button', { type: 'submit' }, 'Show'),
  )
  const rows = t.entries.map((e) => {
    const name =
      e.type === 'dir'
        ? h('a', { href: link('tree', { path: e.path, at }) }, e.name + '/')
        : h('a', { href: link('history', { path: e.path }), title: 'Versions of this file' }, e.name)
    const dl =
      e.type === 'dir'
        ? h('a', { href: archiveUrl(e.path, at), download: `${e.name}.tar` }, 'tar')
        : e.type === 'symlink'
          ? h('span', { class: 'dim' }, 'symlink')
          : h('a', { href: fileUrl(e.path, at), download: e.name }, 'download')
    const from = e.type === 'dir' ? h('span', { class: 'dim' }, 'folder') : e.untracked ? h('span', { class: 'dim', title: 'Untracked: the mirror’s current copy, no history kept' }, 'mirror (untracked)') : e.from
    return [name, bytes(e.size), nsTime(e.mtimeNs), from, e.warning ? h('span', { class: 'warn', title: 'backup.py overwrote this file in place: the stored bytes are a later version' }, 'overwritten') : short(e.sha256), dl]
  })
  const files = t.entries.filter((e) => e.type !== 'dir')
  const folders = t.entries.length - files.length
  const out = [
    form,
    crumbs(path, at),
    h('p', {}, `${t.at ? `As of ${t.at}` : 'Latest state'}: ${folders} ${folders === 1 ? 'folder' : 'folders'}, ${files.length} ${files.length === 1 ? 'file' : 'files'} (${bytes(files.reduce((s, e) => s + e.size, 0))}) here. `, h('a', { href: archiveUrl(path, at), download: '' }, 'Download this folder as tar'), ' · ', h('a', { href: link('diff', { path, to: t.at ?? '' }) }, 'compare with the increment before')),
    status?.leftovers?.interruptedRun ? h('p', { class: 'warn' }, 'An interrupted run is unfinished; the next backup run completes it.') : '',
    table(['Name', 'Size', 'Modified', 'From', 'SHA-256', ''], rows, [1]),
  ]
  if (status?.serve?.allowRestore) out.push(restoreForm([path].filter(Boolean), t.at))
  return out
}

function restoreForm(paths, at) {
  const result = h('div', { role: 'status' })
  const form = h(
    'form',
    { class: 'bar', onsubmit: async (ev) => {
      ev.preventDefault()
      const fd = new FormData(ev.target)
      result.replaceChildren(h('p', { class: 'dim' }, 'Restoring…'))
      try {
        const r = await api('restore', {}, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ to: fd.get('to'), paths, at: at ?? undefined, overwrite: fd.get('overwrite') === 'on', dryRun: fd.get('dryRun') === 'on' }),
        })
        result.replaceChildren(
          h('p', { class: r.warnings.length ? 'warn' : 'ok' }, `${r.dryRun ? 'Dry run: would restore' : 'Restored'} ${r.dryRun ? r.files : r.restored} of ${r.files} files (${bytes(r.bytes)}); ${r.existing} existed and were left alone.`),
          r.warnings.length ? table(['Path', 'Problem', 'Message'], r.warnings.map((w) => [w.path ?? '', w.code, w.message])) : '',
        )
      } catch (e) {
        result.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message))
      }
    } },
    h('label', { for: 'restore-to' }, 'Restore into folder (absolute path)', h('input', { id: 'restore-to', name: 'to', required: true, size: 40, placeholder: '/home/me/restored' })),
    h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'overwrite' }), 'overwrite existing files'),
    h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'dryRun' }), 'dry run'),
    h('button', { type: 'submit' }, 'Restore'),
  )
  return h('section', { class: 'panel', 'aria-label': 'Restore' }, h('h2', {}, `Restore ${paths[0] ?? 'everything'} ${at ? `as of ${at}` : '(latest state)'}`), form, result)
}

async function historyView(params) {
  const path = params.get('path') ?? ''
  const hist = await api('history', { path })
  const versions = hist.versions
  const rows = versions.map((v, k) => [
    h('a', { href: link('tree', { path: path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '', at: v.increment }) }, v.increment),
    when(v.timestamp),
    opBadge(v.op),
    v.category === 'deleted' ? h('span', { class: 'dim' }, '(deleted)') : bytes(v.size),
    nsTime(v.mtime_ns),
    short(v.sha256),
    v.present && v.category !== 'deleted' ? h('a', { href: fileUrl(path, v.increment), download: path.split('/').pop() }, 'download') : h('span', { class: 'dim' }, v.present ? '' : 'missing'),
    h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'left', value: String(k), 'aria-label': `compare from ${v.increment}` }), 'A'),
    h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'right', value: String(k), 'aria-label': `compare to ${v.increment}` }), 'B'),
  ])
  if (hist.mirror) {
    const m = hist.mirror
    rows.push([
      h('strong', {}, 'mirror (now)'),
      '–',
      m.tracked ? '' : h('span', { class: 'dim' }, 'untracked'),
      bytes(m.size),
      nsTime(m.mtimeNs),
      short(m.sha256),
      m.present ? h('a', { href: fileUrl(path), download: path.split('/').pop() }, 'download') : '',
      h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'left', value: 'mirror', 'aria-label': 'compare from the mirror' }), 'A'),
      h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'right', value: 'mirror', 'aria-label': 'compare to the mirror' }), 'B'),
    ])
  }
  const stored = versions.map((v, k) => ({ key: String(k), at: v.increment, label: v.increment, ok: v.present && v.category !== 'deleted' }))
  if (hist.mirror?.present) stored.push({ key: 'mirror', at: undefined, label: 'mirror', ok: true })
  const usable = stored.filter((s) => s.ok)
  const compare = h('div', { id: 'compare' })
  const form = h(
    'form',
    { onsubmit: (ev) => {
      ev.preventDefault()
      const fd = new FormData(ev.target)
      const a = stored.find((s) => s.key === fd.get('left'))
      const b = stored.find((s) => s.key === fd.get('right'))
      if (a && b) renderCompare(compare, path, a, b)
    } },
    table(['Increment', 'Time', 'Op', 'Size', 'Modified', 'SHA-256', '', 'A', 'B'], rows, [3]),
    h('button', { type: 'submit' }, 'Compare A and B side by side'),
  )
  if (usable.length >= 2) {
    const [a, b] = usable.slice(-2)
    form.querySelector(`input[name=left][value="${a.key}"]`).checked = true
    form.querySelector(`input[name=right][value="${b.key}"]`).checked = true
    renderCompare(compare, path, a, b)
  }
  return [
    h('p', {}, h('span', { class: 'mono' }, path), ` — ${versions.length} stored versions`, hist.skipped.length ? h('span', { class: 'bad' }, ` (${hist.skipped.length} increments could not be read)`) : ''),
    form,
    compare,
  ]
}

/** Fetches two versions and shows them side by side when both are text. */
async function renderCompare(box, path, a, b) {
  box.replaceChildren(h('p', { class: 'dim' }, 'Loading both versions…'))
  const get = async (s) => {
    const r = await fetch(fileUrl(path, s.at), { credentials: 'same-origin' })
    if (!r.ok) throw new Error(`${s.label}: ${(await r.json().catch(() => ({}))).error?.message ?? r.statusText}`)
    const buf = new Uint8Array(await r.arrayBuffer())
    if (buf.length > 2 * 1024 * 1024) return null
    if (buf.includes(0)) return null
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buf)
    } catch {
      return null
    }
  }
  try {
    const [ta, tb] = await Promise.all([get(a), get(b)])
    if (ta === null || tb === null) {
      box.replaceChildren(h('p', { class: 'dim' }, 'Not shown side by side: one of the versions is not text (or larger than 2 MiB). Download them instead.'))
      return
    }
    const lines = (t) => (t.endsWith('\n') ? t.slice(0, -1) : t).split('\n')
    const ops = lineDiff(lines(ta), lines(tb))
    if (!ops) {
      box.replaceChildren(h('p', { class: 'dim' }, 'The versions differ in too many lines to show side by side here.'))
      return
    }
    const grid = h('div', { class: 'sbs', role: 'table', 'aria-label': `${a.label} and ${b.label} side by side` })
    grid.append(h('div', { class: 'head', role: 'columnheader' }, `A: ${a.label}`), h('div', { class: 'head', role: 'columnheader' }, `B: ${b.label}`))
    for (const row of sideBySide(ops)) {
      const cls = (text, changed) => (row.kind === 'same' ? undefined : text === undefined ? 'gap' : changed)
      grid.append(h('div', { class: cls(row.left, 'del'), role: 'cell' }, row.left ?? ''), h('div', { class: cls(row.right, 'add'), role: 'cell' }, row.right ?? ''))
    }
    const changed = ops.filter((o) => o.op !== 'same').length
    box.replaceChildren(h('h2', {}, `Side by side: ${a.label} → ${b.label}`), h('p', { class: 'dim' }, changed ? `${changed} lines differ.` : 'The two versions are the same text.'), grid)
  } catch (e) {
    box.replaceChildren(h('p', { class: 'error' }, e.message))
  }
}

async function searchView(params) {
  const f = {
    mask: params.getAll('mask').join(' ') || params.get('mask') || '',
    size: params.get('size') ?? '',
    time: params.get('time') ?? '',
    path: params.get('path') ?? '',
    ignoreCase: params.get('ignoreCase') === '1',
    lastBackups: params.get('lastBackups') ?? '',
  }
  const form = h(
    'form',
    { class: 'bar', role: 'search', onsubmit: (ev) => {
      ev.preventDefault()
      const fd = new FormData(ev.target)
      location.hash = link('search', { mask: fd.get('mask'), size: fd.get('size'), time: fd.get('time'), path: fd.get('path'), ignoreCase: fd.get('ignoreCase') ? '1' : '', lastBackups: fd.get('lastBackups') })
    } },
    h('label', { for: 'q-mask' }, 'Name or glob (spaces: several)', h('input', { id: 'q-mask', name: 'mask', value: f.mask, placeholder: '*.pdf report' })),
    h('label', { for: 'q-size' }, 'Size', h('input', { id: 'q-size', name: 'size', value: f.size, placeholder: '>100M, 10K-1M', size: 10 })),
    h('label', { for: 'q-time' }, 'Modified', h('input', { id: 'q-time', name: 'time', value: f.time, placeholder: '2024-01-15, >2024-01-01', size: 16 })),
    h('label', { for: 'q-path' }, 'Folder or path glob', h('input', { id: 'q-path', name: 'path', value: f.path, placeholder: 'docs, **/*.tex', size: 14 })),
    h('label', { for: 'q-last' }, 'Newest N increments', h('input', { id: 'q-last', name: 'lastBackups', value: f.lastBackups, size: 4, inputmode: 'numeric' })),
    h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'ignoreCase', checked: f.ignoreCase }), 'ignore case'),
    h('button', { type: 'submit' }, 'Search'),
  )
  if (!f.mask && !f.size && !f.time && !f.path) return [form, h('p', { class: 'dim' }, 'Search every increment by name, size, modification time or folder (the filters of `backup search`).')]
  const r = await api('search', { mask: f.mask.split(/\s+/).filter(Boolean), size: f.size, time: f.time, path: f.path ? [f.path] : [], ignoreCase: f.ignoreCase ? 1 : '', lastBackups: f.lastBackups, limit: 2000 })
  const rows = r.hits.map((x) => [
    h('a', { href: link('tree', { path: x.path.includes('/') ? x.path.slice(0, x.path.lastIndexOf('/')) : '', at: x.increment }) }, x.increment),
    h('a', { href: link('history', { path: x.path }) }, x.path),
    opBadge(x.op),
    bytes(x.size),
    nsTime(x.mtime_ns),
    x.category === 'deleted' ? h('span', { class: 'dim' }, 'deleted') : h('a', { href: fileUrl(x.path, x.increment), download: x.path.split('/').pop() }, 'download'),
  ])
  return [
    form,
    h('p', {}, `${r.totals.files} versions in ${r.totals.increments} of ${r.incrementsSearched} increments (${bytes(r.totals.bytes)}; ${r.totals.deleted} deletions)`, r.truncated ? h('span', { class: 'warn' }, ` — showing the first ${r.hits.length}`) : '', '.'),
    r.skipped.length ? h('p', { class: 'bad' }, `Not searched (metadata missing or damaged): ${r.skipped.join(', ')}`) : '',
    table(['Increment', 'Path', 'Op', 'Size', 'Modified', ''], rows, [3]),
  ]
}

async function diffView(params) {
  const incs = await incrementsList()
  let from = params.get('from') ?? ''
  const to = params.get('to') ?? ''
  const path = params.get('path') ?? ''
  const form = h(
    'form',
    { class: 'bar', onsubmit: (ev) => {
      ev.preventDefault()
      const fd = new FormData(ev.target)
      location.hash = link('diff', { from: fd.get('from'), to: fd.get('to'), path: fd.get('path') })
    } },
    await pointSelect('from', from, { latest: false, label: 'From' }),
    await pointSelect('to', to || incs.at(-1)?.name, { latest: false, label: 'To' }),
    h('label', { for: 'd-path' }, 'Under folder', h('input', { id: 'd-path', name: 'path', value: path, size: 20 })),
    h('button', { type: 'submit' }, 'Compare'),
  )
  if (incs.length < 2 && !from) return [form, h('p', { class: 'dim' }, 'A comparison needs two increments.')]
  const d = await api('diff', { from, to, path })
  from = d.from
  form.querySelector('#sel-from').value = d.from ?? ''
  form.querySelector('#sel-to').value = d.to ?? ''
  const of = (status) => d.items.filter((i) => i.status === status)
  const pathLink = (x) => h('a', { href: link('history', { path: x.path }) }, x.path)
  const row = (x, v) => [pathLink(x), bytes(v.size), short(v.sha256), v.increment]
  return [
    form,
    h('p', {}, `${d.from} → ${d.to}${path ? ` under ${path}` : ''}: ${d.added} added (${bytes(d.addedBytes)}), ${d.removed} removed (${bytes(d.removedBytes)}), ${d.changed} changed (tracked files; untracked files keep no history).`),
    h('h2', {}, `Added (${d.added})`),
    table(['Path', 'Size', 'SHA-256', 'From'], of('added').map((x) => row(x, x.to)), [1]),
    h('h2', {}, `Removed (${d.removed})`),
    table(['Path', 'Size', 'SHA-256', 'From'], of('removed').map((x) => row(x, x.from)), [1]),
    h('h2', {}, `Changed (${d.changed})`),
    table(
      ['Path', 'Size before', 'Size after', 'SHA-256 before', 'SHA-256 after'],
      of('changed').map((x) => [pathLink(x), bytes(x.from.size), bytes(x.to.size), short(x.from.sha256), short(x.to.sha256)]),
      [1, 2],
    ),
  ]
}

async function statusView() {
  const s = await api('status')
  const lr = s.lastRun
  const lo = s.leftovers
  const items = []
  const line = (cls, ...text) => items.push(h('li', { class: cls }, ...text))
  if (!lr) line('dim', 'Last run: none recorded.')
  else {
    line(lr.result === 'ok' ? 'ok' : lr.result === 'partial' ? 'warn' : 'bad', `Last run: ${lr.result} at ${when(lr.finished)}`, lr.increment ? ` → ${lr.increment}` : '', `, ${lr.warnings} warnings.`)
    if (lr.error) line('bad', `${lr.error.code}: ${lr.error.message}`)
  }
  if (lo.interruptedRun) line('warn', `Unfinished run started ${when(lo.interruptedRun.started)}${lo.interruptedRun.increment ? ` (${lo.interruptedRun.increment})` : ''}: the next backup run completes it.`)
  if (lo.incompleteIncrements.length) line('warn', `Unfinished increments (not shown as complete): ${lo.incompleteIncrements.join(', ')}`)
  if (lo.prunePending) line('warn', 'An interrupted prune is pending.')
  if (lo.deletePending) line('warn', 'An interrupted delete is pending.')
  if (s.lock) line(s.lock.alive ? 'warn' : 'dim', `Lock: ${s.lock.command} by pid ${s.lock.pid}@${s.lock.host} since ${when(s.lock.started)} (${s.lock.alive ? 'running' : 'not running'})`)
  if (s.notWritable) line('bad', `The backup folder cannot be written (${s.notWritable}).`)
  const st = s.state
  if (st.original) line('warn', 'A folder made by backup.py: the next backup run adopts it.')
  else if (!st.statePresent) line('warn', 'Mirror state missing: rebuild it with `backup recreate`.')
  else if (st.stateError) line('bad', `Mirror state unreadable: ${st.stateError}`)
  else if (st.agrees) line('ok', `Mirror state agrees with mirror/ (${st.mirrorFiles} files).`)
  else line('warn', `Mirror state disagrees with mirror/: ${st.missing.length} missing, ${st.extra.length} extra, ${st.differing.length} differing.`)
  line('dim', 'Last verify: not recorded in the backup folder; run `backup verify --dst …` to check every stored file against its hash.')
  return [
    h('p', {}, `${s.dst}: ${s.increments} increments${s.newest ? `, newest ${s.newest}` : ''}. ${s.serve.allowRestore ? 'Restore is allowed from this page.' : 'Read-only (start with --allow-restore to restore from the page).'}`),
    h('section', { class: 'panel', 'aria-label': 'Status' }, h('ul', {}, items)),
    lr?.warningSample?.length ? [h('h2', {}, 'Warnings of the last run (sample)'), table(['Path', 'Code', 'Message'], lr.warningSample.map((w) => [h('span', { class: 'mono' }, w.path), w.code, w.message]))] : '',
    s.damaged.length ? [h('h2', {}, 'Damaged metadata'), table(['File', 'Problem', 'Fix'], s.damaged.map((d) => [h('span', { class: 'mono' }, d.file), d.problem, h('code', {}, d.fix)]))] : h('p', { class: 'ok' }, 'No increment has missing or damaged metadata.'),
    s.target ? h('p', { class: 'dim' }, `Target file system: ${s.target.caps.fs_type}${s.target.limits.length ? `: ${s.target.limits.join('; ')}` : ''}`) : '',
  ]
}

// ---------------------------------------------------------------- router

const VIEWS = {
  timeline: ['Timeline', timeline],
  tree: ['Browse', tree],
  history: ['File history', historyView],
  search: ['Search', searchView],
  diff: ['Compare two points in time', diffView],
  status: ['Status', statusView],
}

function route() {
  const hash = location.hash.replace(/^#\/?/, '')
  const [name, query] = [hash.split('?')[0] || 'timeline', hash.includes('?') ? hash.slice(hash.indexOf('?') + 1) : '']
  const [title, view] = VIEWS[name] ?? VIEWS.timeline
  const params = new URLSearchParams(query)
  for (const a of document.querySelectorAll('nav a[data-view]')) {
    if (a.dataset.view === name || (name === 'history' && a.dataset.view === 'tree')) a.setAttribute('aria-current', 'page')
    else a.removeAttribute('aria-current')
  }
  const label = name === 'history' ? `History of ${params.get('path')}` : name === 'tree' && params.get('path') ? `Browse ${params.get('path')}` : title
  return show(label, () => view(params))
}

window.addEventListener('hashchange', route)
api('status')
  .then((s) => (document.getElementById('dst').textContent = s.dst))
  .catch(() => {})
route()
