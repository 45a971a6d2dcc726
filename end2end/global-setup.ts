import { chromium, request, FullConfig } from "@playwright/test";
import * as fs from "fs";
import * as path from "path";

/** Where the signed-in administrator's browser state and API token are kept for the tests. */
export const AUTH_DIR = path.join(__dirname, ".auth");
export const ADMIN_STATE = path.join(AUTH_DIR, "admin.json");
export const ADMIN_TOKEN = path.join(AUTH_DIR, "admin-token");

/**
 * Signs the administrator in once, through the real sign-in form, and makes an API token
 * with its Basic credentials (`POST /api/v1/tokens`). The server was started with
 * FORGETLAB_ADMIN_USER and FORGETLAB_ADMIN_PASSWORD (scripts/test does it).
 */
export default async function globalSetup(config: FullConfig) {
  const baseURL = config.projects[0].use.baseURL!;
  const user = process.env.FORGETLAB_ADMIN_USER;
  const password = process.env.FORGETLAB_ADMIN_PASSWORD;
  if (!user || !password) {
    throw new Error("set FORGETLAB_ADMIN_USER and FORGETLAB_ADMIN_PASSWORD to the server's administrator (scripts/test does)");
  }
  fs.mkdirSync(AUTH_DIR, { recursive: true });
  const browser = await chromium.launch(config.projects[0].use.launchOptions);
  const page = await browser.newPage({ baseURL });
  await page.goto("/login");
  await page.fill("input[name=name]", user);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL((url) => !url.pathname.startsWith("/login")), page.click("button[type=submit]")]);
  await page.context().storageState({ path: ADMIN_STATE });
  await browser.close();

  const api = await request.newContext({ baseURL, httpCredentials: { username: user, password, send: "always" } });
  const made = await api.post("/api/v1/tokens", { data: { name: "playwright" } });
  if (made.status() !== 201) throw new Error(`POST /api/v1/tokens: ${made.status()} ${await made.text()}`);
  fs.writeFileSync(ADMIN_TOKEN, (await made.json()).token);
  await api.dispose();
}
