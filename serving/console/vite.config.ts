/// <reference types="vitest" />
// Vite builds the console into dist/ (git-ignored), served by the API at /console (serving/console.py).
// JSX goes through esbuild's automatic runtime, so no React plugin is needed.
import { defineConfig, loadEnv } from "vite";

const env = loadEnv("development", ".", "AURA_");

export default defineConfig({
  base: "/console/",
  esbuild: { jsx: "automatic" },
  // `npx vite`: hot reload at http://127.0.0.1:5173/console/, the API calls sent to a running `aura api`
  server: { proxy: { "/v1": env.AURA_API_URL ?? "http://127.0.0.1:8000" } },
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
    rollupOptions: {
      output: {
        manualChunks: { polaris: ["@shopify/polaris"], recharts: ["recharts"] },
      },
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test-setup.ts"],
  },
});
