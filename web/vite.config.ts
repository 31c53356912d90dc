import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

// Built into web/dist, which the wshub binary embeds and serves at `/`.
export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
