/**
 * Names that are not valid UTF-8, as the metadata holds them (see
 * `crates/core/src/fs/names.rs`): each byte that is not part of valid UTF-8 is
 * the code point U+10FF00 + byte. People see and type such a byte as `\xNN`.
 */

const ESCAPE = 0x10ff00
// Code points U+10FF80..U+10FFFF (surrogate pairs in a JS string).
const ESCAPED = /[\u{10FF80}-\u{10FFFF}]/u
const ESCAPED_ALL = /[\u{10FF80}-\u{10FFFF}]/gu

/** Whether `rel` holds escaped bytes. */
export function hasEscapes(rel: string): boolean {
  return ESCAPED.test(rel)
}

/** `rel` for people: each escaped byte as `\xNN`. */
export function displayName(rel: string): string {
  return hasEscapes(rel) ? rel.replace(ESCAPED_ALL, (c) => `\\x${(c.codePointAt(0)! - ESCAPE).toString(16).padStart(2, '0')}`) : rel
}

/** A path typed by a person: `\xNN` with NN from 80 to ff stands for that raw byte. */
export function parseName(input: string): string {
  return input.replace(/\\x([89a-fA-F][0-9a-fA-F])/g, (_, h: string) => String.fromCodePoint(ESCAPE + parseInt(h, 16)))
}

/** The raw bytes `rel` stands for (a file system path as a Buffer). */
export function nameBytes(rel: string): Buffer {
  if (!hasEscapes(rel)) return Buffer.from(rel)
  const parts: Buffer[] = []
  for (const ch of rel) {
    const cp = ch.codePointAt(0)!
    parts.push(cp >= ESCAPE + 0x80 && cp <= ESCAPE + 0xff ? Buffer.from([cp - ESCAPE]) : Buffer.from(ch))
  }
  return Buffer.concat(parts)
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0. */
function utf8Len(b: Buffer, i: number): number {
  const x = b[i]
  if (x < 0x80) return 1
  const cont = (k: number) => i + k < b.length && (b[i + k] & 0xc0) === 0x80
  if (x >= 0xc2 && x <= 0xdf) return cont(1) ? 2 : 0
  if (x >= 0xe0 && x <= 0xef) {
    if (!cont(1) || !cont(2)) return 0
    const y = b[i + 1]
    if ((x === 0xe0 && y < 0xa0) || (x === 0xed && y > 0x9f)) return 0
    return 3
  }
  if (x >= 0xf0 && x <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0
    const y = b[i + 1]
    if ((x === 0xf0 && y < 0x90) || (x === 0xf4 && y > 0x8f)) return 0
    return 4
  }
  return 0
}

/** Raw name bytes as the metadata holds them (the same mapping as the core's `names::encode`). */
export function bytesName(b: Buffer): string {
  let s = ''
  let i = 0
  while (i < b.length) {
    const n = utf8Len(b, i)
    const ch = n ? b.subarray(i, i + n).toString('utf8') : ''
    if (n && !hasEscapes(ch)) s += ch
    else for (let k = 0; k < (n || 1); k++) s += String.fromCodePoint(ESCAPE + b[i + k])
    i += n || 1
  }
  return s
}
