/// <reference types="vitest" />
// Vite builds the console into dist/ (git-ignored), served by the API at /console (serving/console.py).
// JSX goes through esbuild's automatic runtime, so no React plugin is needed.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/",
  esbuild: { jsx: "automatic" },
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
