/**
 * Hidden or false reports (issue 9, items 10–13): every command tells the truth about damaged
 * metadata, unfinished runs, signatures and the target's limits.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { checksumFolder, keygen } from '../js'
import { cli, tmpdir, writeTree } from './helpers'

const hash = (algo: string, data: Buffer | string) => crypto.createHash(algo).update(data).digest('hex')

describe('verify: an embedded Ed25519 signature is always checked', () => {
  it('refuses a signed report whose signature no longer matches, even without --pubkey (exit 2)', async () => {
    const dir = tmpdir('data-')
    writeTree(dir, { 'a.txt': 'alpha', 'b.txt': 'beta' })
    const keys = tmpdir('keys-')
    const { privateKey } = keygen(path.join(keys, 'reports'))
    const report = path.join(tmpdir(), 'r.json')
    await checksumFolder(dir, 'g', report, { signKey: privateKey })

    // Intact: accepted, and the output says what the embedded key does and does not prove.
    let r = cli(['verify', report])
    expect(r.status).toBe(0)
    expect(r.stderr).toContain('only --pubkey proves who signed')
    r = cli(['verify', report, '--json'])
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout).signatureCheck).toBe('embedded-key')

    // Altered after signing, with the SHA3-512 recomputed so the digest still passes.
    const env = JSON.parse(fs.readFileSync(report, 'utf8'))
    const data = JSON.parse(env.data)
    data.checksums['a.txt'].sha256 = hash('sha256', 'evil')
    env.data = JSON.stringify(data)
    env.signature = hash('sha3-512', env.data)
    fs.writeFileSync(report, JSON.stringify(env))
    r = cli(['verify', report])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('Ed25519 signature does not match the public key embedded in it')
    expect(r.stderr).toContain('only `--pubkey` proves who signed')

    // A damaged (non-hex) signature is refused too.
    env.signature_ed25519 = 'zz' + env.signature_ed25519.slice(2)
    fs.writeFileSync(report, JSON.stringify(env))
    r = cli(['verify', report])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('Ed25519 signature is not hex')

    // An unsigned report is still fine without --pubkey.
    const plain = path.join(tmpdir(), 'plain.json')
    await checksumFolder(dir, 'g', plain)
    r = cli(['verify', plain, '--json'])
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout).signatureCheck).toBe('unsigned')
  })
})
