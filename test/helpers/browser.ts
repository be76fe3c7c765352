import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** The system Chromium (Debian package `chromium`); playwright-core never downloads a browser. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/**
 * Headless system Chromium with a fresh, empty profile (playwright's default for `launch`), no
 * sandbox (CI runs as root) and no background networking. Throws — it never skips — when the
 * browser is not installed, saying how to install it. Its GPU is off (`navigator.gpu` gives no
 * adapter) unless `webgpu`: then `--enable-unsafe-webgpu` gives pages an adapter (Chromium's own
 * SwiftShader Vulkan where the machine has no GPU).
 * @example
 * ```ts
 * const browser = await launchBrowser();
 * try { const page = await browser.newPage(); … } finally { await browser.close(); }
 * ```
 */
export async function launchBrowser(options: { webgpu?: boolean } = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: the browser tests need it. Install it with ` +
        '`apt-get update && apt-get install -y chromium` (Debian package; .ci/run does this in CI).',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      '--headless',
      '--no-sandbox',
      ...(options.webgpu ? ['--enable-unsafe-webgpu'] : ['--disable-gpu']),
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
