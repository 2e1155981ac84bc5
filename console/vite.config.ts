import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * Builds the console into core-proxy's `dist/console`, which ships in that package's `files` and is
 * served at `/console` under a strict CSP: no inline script or style, so nothing is inlined.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/console/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: fileURLToPath(new URL('../core-proxy/dist/console', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // The polyfill would be an inline script; every browser the console targets has modulepreload.
    modulePreload: { polyfill: false },
    // Inlined assets would be data: URLs in CSS or scripts; keep every asset a file of its own.
    assetsInlineLimit: 0,
    sourcemap: false,
  },
});
