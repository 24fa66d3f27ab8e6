/// <reference lib="dom" />
// (page.evaluate bodies run in the browser: DOM types for those functions)
// Driving Debian's Chromium headless over CDP (puppeteer-core: it never downloads a browser) to
// check pages as a reader gets them: console errors, failed or remote requests, blank charts,
// dead links, horizontal overflow, and what the first screen says. Used by the browser tests.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'puppeteer-core';

/** the system Chromium (pnpm lab setup publish), or null when it is not installed */
export function chromiumPath(): string | null {
  for (const p of [process.env.EBPF_LAB_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'])
    if (p && existsSync(p)) return p;
  return null;
}

export async function launchChromium(executablePath: string): Promise<Browser> {
  const { default: puppeteer } = await import('puppeteer-core');
  const args = ['--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check', '--hide-scrollbars', '--font-render-hinting=none'];
  // Chromium refuses to start as root with its sandbox on
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  return puppeteer.launch({ executablePath, headless: true, args, protocolTimeout: 120_000 });
}

export interface CanvasCheck {
  id: string;
  width: number;
  height: number;
  /** share of pixels that are drawn (alpha > 0 and not white) */
  inked: number;
  colors: number;
}

export interface PageAudit {
  url: string;
  width: number;
  consoleErrors: string[];
  failedRequests: string[];
  /** requests to anything but file: and data: (the site must be self-contained) */
  remoteRequests: string[];
  canvases: CanvasCheck[];
  brokenImages: string[];
  /** links whose target file or in-page anchor does not exist */
  deadLinks: string[];
  links: number;
  /** the document is wider than the viewport (a reader scrolls sideways) */
  overflowPx: number;
  /** the text visible without scrolling */
  firstScreen: string;
}

/** open `url` in a fresh page at `width` px and audit it */
export async function auditPage(browser: Browser, url: string, width: number, height = 800): Promise<PageAudit & { page: Page }> {
  const page = await browser.newPage();
  await page.setViewport({ width, height, deviceScaleFactor: 1 });
  const a: PageAudit = { url, width, consoleErrors: [], failedRequests: [], remoteRequests: [], canvases: [], brokenImages: [], deadLinks: [], links: 0, overflowPx: 0, firstScreen: '' };
  page.on('console', (m) => { if (m.type() === 'error') a.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => a.consoleErrors.push(`uncaught: ${(e as Error).message ?? String(e)}`));
  page.on('requestfailed', (r) => a.failedRequests.push(`${r.url().slice(0, 120)}: ${r.failure()?.errorText}`));
  page.on('request', (r) => { if (!/^(file|data|about):/.test(r.url())) a.remoteRequests.push(r.url()); });
  page.on('response', (r) => { if (r.status() >= 400) a.failedRequests.push(`${r.url()}: HTTP ${r.status()}`); });
  await page.goto(url, { waitUntil: 'load', timeout: 60_000 });
  // charts draw synchronously (animation off), but give layout one frame to settle
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const r = await page.evaluate(() => {
    const canvases = [...document.querySelectorAll('canvas')].map((c) => {
      const ctx = c.getContext('2d')!;
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let inked = 0;
      const colors = new Set<number>();
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3]! > 0 && !(d[i]! > 250 && d[i + 1]! > 250 && d[i + 2]! > 250)) inked++;
        if (colors.size < 1000) colors.add((d[i]! << 24) | (d[i + 1]! << 16) | (d[i + 2]! << 8) | d[i + 3]!);
      }
      return { id: c.id, width: c.width, height: c.height, inked: inked / Math.max(1, c.width * c.height), colors: colors.size };
    });
    const brokenImages = [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.alt || i.src.slice(0, 60));
    const anchors = [...document.querySelectorAll('a[href]')].map((x) => (x as HTMLAnchorElement).getAttribute('href')!);
    const missingAnchors = anchors.filter((h) => h.startsWith('#') && h.length > 1 && !document.getElementById(decodeURIComponent(h.slice(1))));
    const resolved = anchors.filter((h) => !h.startsWith('#')).map((h) => new URL(h, location.href).href);
    const texts: string[] = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const n = walker.currentNode;
      if (!n.textContent?.trim()) continue;
      const range = document.createRange();
      range.selectNodeContents(n);
      for (const b of range.getClientRects())
        if (b.width > 0 && b.top < innerHeight && b.bottom > 0 && b.left < innerWidth && b.right > 0) {
          texts.push(n.textContent.trim());
          break;
        }
    }
    return { canvases, brokenImages, missingAnchors, resolved, links: anchors.length, overflowPx: document.documentElement.scrollWidth - innerWidth, firstScreen: texts.join(' ') };
  });
  a.canvases = r.canvases;
  a.brokenImages = r.brokenImages;
  a.links = r.links;
  a.overflowPx = r.overflowPx;
  a.firstScreen = r.firstScreen;
  a.deadLinks = r.missingAnchors.map((h) => `${h} (no such id)`);
  for (const href of r.resolved) {
    const u = new URL(href);
    if (u.protocol === 'file:') {
      if (!existsSync(fileURLToPath(u))) a.deadLinks.push(href);
    } else if (u.protocol !== 'data:') a.deadLinks.push(`${href} (not a local link)`);
  }
  return { ...a, page };
}
