import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/** The console's bundle: web/dist, served by the service itself (src/api/console.ts). */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Every asset name carries a content hash, so the server can let browsers keep them a year.
    assetsDir: 'assets',
    chunkSizeWarningLimit: 1024,
  },
});
