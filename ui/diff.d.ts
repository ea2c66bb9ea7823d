/** Types of diff.js for the tests (the page itself is plain JavaScript; this file is not served). */
export type Op = { op: 'same'; a: string; b: string } | { op: 'add'; b: string } | { op: 'del'; a: string }
export function lineDiff(a: string[], b: string[], limit?: number): Op[] | null
export function sideBySide(ops: Op[]): { left?: string; right?: string; kind: 'same' | 'change' }[]
