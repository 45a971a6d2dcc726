import { expect, test as base, APIRequestContext, Page } from "@playwright/test";
import * as fs from "fs";
import * as path from "path";

/**
 * Playwright's `test`, with `request` (the API client) sending the administrator's API token:
 * scripts reach the JSON API with tokens, pages with the session cookie.
 */
export const test = base.extend<{ request: APIRequestContext }>({
  request: async ({ playwright, baseURL }, use) => {
    const token = fs.readFileSync(path.join(__dirname, "..", ".auth", "admin-token"), "utf8").trim();
    const context = await playwright.request.newContext({ baseURL, extraHTTPHeaders: { Authorization: `Bearer ${token}` } });
    await use(context);
    await context.dispose();
  },
});
export { expect };

/** The signed-in administrator's browser state, for contexts a test makes itself. */
export const ADMIN_STATE = path.join(__dirname, "..", ".auth", "admin.json");

/** Waits until the wasm bundle has hydrated the page (the frontend marks <body>). */
export async function hydrated(page: Page) {
  await expect(page.locator("body[data-hydrated='true']")).toHaveCount(1, { timeout: 30_000 });
}
