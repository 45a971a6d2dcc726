import { expect, Page } from "@playwright/test";

/** Waits until the wasm bundle has hydrated the page (the frontend marks <body>). */
export async function hydrated(page: Page) {
  await expect(page.locator("body[data-hydrated='true']")).toHaveCount(1, { timeout: 30_000 });
}
