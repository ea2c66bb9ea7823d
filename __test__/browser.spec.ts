/**
 * The `backup serve` page in a real browser: the system's Chromium driven by puppeteer-core (its own
 * browser download cannot work offline). Opens the timeline, browses a folder at an older increment,
 * opens a file's history (side by side), runs a search, compares two points, shows the status and
 * downloads a file whose bytes must equal the stored version. Each view is saved as a screenshot in
 * `test-output/browser/` (AXIOMATIC_SCREENSHOTS overrides), kept after the run; the page must log no
 * error (a CSP violation or a script error fails the test).
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { serve, type Served } from '../js'
import { BIN, ROOT, tmpdir } from './helpers'
import { TZ, originalFolder } from './original-backup'
import { engineBackup } from './serve-fixture'
import { needs } from './tools'

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p)) ?? 'chromium'
const OUT = process.env.AXIOMATIC_SCREENSHOTS ?? path.join(ROOT, 'test-output', 'browser')

describe.skipIf(needs('the page in a real browser', ['chromium', 'python3']))('backup serve in Chromium', () => {
  let f: Awaited<ReturnType<typeof engineBackup>>
  let s: Served
  let browser: Browser
  let page: Page
  const problems: string[] = []

  beforeAll(async () => {
    fs.mkdirSync(OUT, { recursive: true })
    f = await engineBackup()
    s = await serve(f.dst)
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Root in a container: Chromium's sandbox needs user namespaces it does not get here.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    })
    page = await browser.newPage()
    await page.setViewport({ width: 1280, height: 900 })
    page.on('pageerror', (e) => problems.push(`page error: ${(e as Error).message}`))
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`)
    })
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await s?.close()
  })

  const shot = (name: string) => page.screenshot({ path: path.join(OUT, `${name}.png`) as `${string}.png`, fullPage: true })
  const heading = () => page.$eval('main h1', (e) => e.textContent)
  const texts = (sel: string) => page.$$eval(sel, (els) => els.map((e) => e.textContent ?? ''))
  /** Waits until the view's content replaced "Loading…". */
  const settled = () => page.waitForFunction(() => !document.querySelector('main p.dim')?.textContent?.startsWith('Loading'), { timeout: 20_000 })

  it('the timeline lists every increment, with its charts, and the token leaves the address bar', async () => {
    await page.goto(s.url, { waitUntil: 'networkidle0' })
    expect(page.url()).toBe(`${s.origin}/#/timeline`.replace('#/timeline', '')) // redirected to /, cookie set
    await page.waitForSelector('main table tbody tr')
    expect(await heading()).toBe('Timeline')
    const names = await texts('main table tbody tr td:first-child a')
    expect(names).toEqual([...f.names].reverse())
    await page.waitForSelector('main figure svg polyline')
    expect(await page.$$eval('main figure svg rect', (r) => r.length)).toBe(3)
    // "Only here": the bytes only each increment holds, from the index's timeline (newest first).
    expect(await texts('main table tbody tr td:nth-child(7)')).toEqual(['0 B', '32 B', '18 B'])
    // The bytes on disk (a walk of the whole backup) are counted only when asked for.
    expect(await page.$eval('#detail-note', (e) => e.textContent)).toBe('')
    await page.click('#count-disk')
    await page.waitForFunction(() => document.querySelector('#detail-note')?.textContent?.includes('On disk:'))
    await shot('timeline')
  })

  it('the keyboard reaches the views: the skip link, then the nav links, with a visible focus', async () => {
    await page.goto(`${s.origin}/`, { waitUntil: 'networkidle0' })
    await page.keyboard.press('Tab')
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content')
    await page.keyboard.press('Tab')
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Timeline')
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle)
    expect(outline).toBe('solid')
    await page.keyboard.press('Tab')
    await page.keyboard.press('Enter') // "Browse"
    await page.waitForFunction(() => document.querySelector('main h1')?.textContent === 'Browse')
    await settled()
  })

  it('browses a folder as it was at the oldest increment', async () => {
    await page.goto(`${s.origin}/#/timeline`, { waitUntil: 'networkidle0' })
    await page.waitForSelector('main table tbody tr')
    const oldest = f.names[0]
    await page.click(`main table a[href="#/tree?at=${oldest}"]`)
    await page.waitForSelector('main table tbody tr')
    await settled()
    await page.click(`main table a[href="#/tree?path=docs&at=${oldest}"]`)
    await page.waitForFunction(() => document.querySelector('main h1')?.textContent === 'Browse docs')
    await settled()
    const rows = await texts('main table tbody tr td:first-child')
    expect(rows).toEqual(['sub/', 'a.txt', 'b.txt', 'link', 'weird name #1 & ü.txt']) // b.txt still there; deleted later
    expect(await page.$eval('#sel-at', (e) => (e as HTMLSelectElement).value)).toBe(oldest)
    await shot('browse-old')
  })

  it('downloads a file of that point in time: the bytes are the stored version', async () => {
    const downloads = tmpdir('downloads-')
    const cdp = await page.createCDPSession()
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads })
    await page.click('main table tbody tr:nth-child(2) a[download]') // a.txt
    const file = path.join(downloads, 'a.txt')
    for (let i = 0; i < 100 && !fs.existsSync(file); i++) await new Promise((r) => setTimeout(r, 100))
    expect(fs.readFileSync(file, 'utf8')).toBe('a version 1\n')
  })

  it("opens a file's history: every version with its hash, the last two side by side", async () => {
    await page.click('main table tbody tr:nth-child(2) td:first-child a') // a.txt → history
    await page.waitForFunction(() => document.querySelector('main h1')?.textContent === 'History of docs/a.txt')
    await page.waitForSelector('.sbs')
    const incs = await texts('main form table tbody tr td:first-child')
    expect(incs).toEqual([...f.names, 'mirror (now)'])
    const cells = await texts('.sbs div')
    expect(cells.join('\n')).toContain('a version 3')
    // Choose versions 1 and 2 with the radio buttons, compare.
    await page.click('input[name=left][value="0"]')
    await page.click('input[name=right][value="1"]')
    await page.click('main form button[type=submit]')
    await page.waitForFunction(() => document.querySelector('#compare h2')?.textContent?.includes('→'))
    const added = await texts('.sbs div.add')
    expect(added).toContain('second line')
    expect(await texts('.sbs div.del')).toContain('a version 1')
    await shot('history')
  })

  it('runs a search with the CLI filters', async () => {
    await page.goto(`${s.origin}/#/search`, { waitUntil: 'networkidle0' })
    await page.waitForSelector('#q-mask')
    await page.type('#q-mask', 'a.txt')
    await page.keyboard.press('Enter')
    await page.waitForSelector('main table tbody tr')
    const paths = await texts('main table tbody tr td:nth-child(2)')
    expect(paths).toEqual(['docs/a.txt', 'docs/a.txt', 'docs/a.txt'])
    expect(page.url()).toContain('#/search?mask=a.txt')
    await shot('search')
  })

  it('compares two points in time and shows the status panel', async () => {
    await page.goto(`${s.origin}/#/diff?from=${f.names[0]}&to=${f.names[2]}`, { waitUntil: 'networkidle0' })
    await page.waitForSelector('main h2')
    await settled()
    const text = await page.$eval('main', (m) => m.textContent ?? '')
    expect(text).toContain('docs/sub/d.txt')
    expect(text).toContain('src/main.py')
    await shot('compare')
    await page.goto(`${s.origin}/#/status`, { waitUntil: 'networkidle0' })
    await page.waitForSelector('main .panel')
    expect(await page.$eval('main .panel', (p) => p.textContent ?? '')).toContain('Last run: ok')
    await shot('status')
  })

  it('restores a folder from the page only when the server allows it', async () => {
    await page.goto(`${s.origin}/#/tree?path=docs`, { waitUntil: 'networkidle0' })
    await page.waitForSelector('main table tbody tr')
    expect(await page.$('#restore-to')).toBeNull() // this server is read-only: no restore form
    const s3 = await serve(f.dst, { allowRestore: true })
    try {
      await page.goto(s3.url, { waitUntil: 'networkidle0' })
      await page.goto(`${s3.origin}/#/tree?path=docs&at=${f.names[0]}`, { waitUntil: 'networkidle0' })
      await page.waitForSelector('#restore-to')
      const to = path.join(tmpdir('page-restore-'), 'out')
      await page.type('#restore-to', to)
      await page.click('section[aria-label=Restore] button[type=submit]')
      await page.waitForFunction(() => document.querySelector('section[aria-label=Restore] [role=status] p')?.textContent?.startsWith('Restored'))
      expect(fs.readFileSync(path.join(to, 'docs/a.txt'), 'utf8')).toBe('a version 1\n')
      expect(fs.readFileSync(path.join(to, 'docs/b.txt'), 'utf8')).toBe('bee\n')
      expect(fs.existsSync(path.join(to, 'docs/sub/d.txt'))).toBe(false) // not there yet at that point
      await shot('restore')
    } finally {
      await s3.close()
    }
  })

  it('works on a backup folder made by backup.py: the timeline, and a version it overwrote in place marked', async () => {
    const o = originalFolder()
    const child = spawn(process.execPath, [BIN, 'serve', '--dst', o.dst], { env: { ...process.env, TZ }, stdio: ['ignore', 'pipe', 'inherit'] })
    try {
      const url = await new Promise<string>((ok, fail) => {
        let out = ''
        child.stdout.on('data', (d) => {
          out += d
          if (out.includes('\n')) ok(out.split('\n')[0])
        })
        child.on('exit', (code) => fail(new Error(`serve exited ${code}`)))
      })
      await page.goto(url, { waitUntil: 'networkidle0' })
      await page.waitForSelector('main table tbody tr')
      const names = await texts('main table tbody tr td:first-child a')
      expect([...names].sort()).toEqual([...o.names].sort())
      expect(await page.$eval('main', (m) => m.textContent ?? '')).toContain('new or changed')
      await shot('original-timeline')
      const origin = new URL(url).origin
      await page.goto(`${origin}/#/tree?path=docs&at=${o.names[0]}`, { waitUntil: 'networkidle0' })
      await page.waitForSelector('main table tbody tr')
      const row = await page.$$eval('main table tbody tr', (rows) => rows.map((r) => r.textContent ?? '').find((t) => t.startsWith('a.txt')))
      expect(row).toContain('overwritten')
      await shot('original-browse')
    } finally {
      child.kill('SIGTERM')
    }
  })

  it('logged no script error and no Content-Security-Policy violation', () => {
    expect(problems.join('\n')).toBe('')
  })
})
