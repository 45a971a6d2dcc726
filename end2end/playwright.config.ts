import { defineConfig } from "@playwright/test";

// The server is started by scripts/test, which passes its URL; a developer can point the
// suite at any running forgetlab with FORGETLAB_URL.
const baseURL = process.env.FORGETLAB_URL ?? "http://127.0.0.1:3000";

export default defineConfig({
  testDir: "./tests",
  // Signs the administrator in (browser state) and makes its API token, once.
  globalSetup: "./global-setup.ts",
  timeout: 240_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL,
    // Not the machine's UTC: pages must write times in the reader's zone (UTC+5:30 here).
    timezoneId: "Asia/Kolkata",
    // Pages run signed in as the administrator, with the session cookie of the real form.
    storageState: "./.auth/admin.json",
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      // Debian's Chromium; never a downloaded browser (the network is closed).
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
});
