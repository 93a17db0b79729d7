import { defineConfig } from "vitest/config";

// `npm run dev` proxies the API to a running `conceptevo serve` on the default port.
export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 800 },
  server: { proxy: { "/api": "http://127.0.0.1:8000" } },
  test: { include: ["test/**/*.test.ts"], environment: "node" },
});
