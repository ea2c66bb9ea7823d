/**
 * Line diff for the side-by-side view: a longest common subsequence of the two versions' lines
 * (dynamic programming; the common head and tail are trimmed first, so a small change in a long file
 * stays cheap). Above `limit` cells of the table it gives up and returns null (the page says so).
 */
export function lineDiff(a, b, limit = 4_000_000) {
  let start = 0
  while (start < a.length && start < b.length && a[start] === b[start]) start++
  let endA = a.length
  let endB = b.length
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--
    endB--
  }
  const x = a.slice(start, endA)
  const y = b.slice(start, endB)
  const n = x.length
  const m = y.length
  if ((n + 1) * (m + 1) > limit) return null
  // lcs[i][j]: LCS length of x[i..] and y[j..], one flat array.
  const w = m + 1
  const lcs = new Uint32Array((n + 1) * w)
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] = x[i] === y[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1])
    }
  }
  const ops = []
  for (let k = 0; k < start; k++) ops.push({ op: 'same', a: a[k], b: b[k] })
  let i = 0
  let j = 0
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      ops.push({ op: 'same', a: x[i], b: y[j] })
      i++
      j++
    } else if (j < m && (i === n || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j])) {
      ops.push({ op: 'add', b: y[j++] })
    } else {
      ops.push({ op: 'del', a: x[i++] })
    }
  }
  for (let k = endA; k < a.length; k++) ops.push({ op: 'same', a: a[k], b: b[k - endA + endB] })
  return ops
}

/** Pairs the deleted and added lines of each changed run, for two columns (left: before, right: after). */
export function sideBySide(ops) {
  const rows = []
  let k = 0
  while (k < ops.length) {
    if (ops[k].op === 'same') {
      rows.push({ left: ops[k].a, right: ops[k].b, kind: 'same' })
      k++
      continue
    }
    const dels = []
    const adds = []
    for (; k < ops.length && ops[k].op !== 'same'; k++) {
      if (ops[k].op === 'del') dels.push(ops[k].a)
      else adds.push(ops[k].b)
    }
    for (let r = 0; r < Math.max(dels.length, adds.length); r++) {
      rows.push({ left: dels[r], right: adds[r], kind: 'change' })
    }
  }
  return rows
}
