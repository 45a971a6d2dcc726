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

/** `YYYY-MM-DD HH:MM` of a stored UTC time in the zone `timeZone`. */
export function calendar(at: string, timeZone: string): string {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
    .formatToParts(new Date(Date.parse(at)));
  const part = (type: string) => parts.find((p) => p.type === type)!.value;
  return `${part("year")}-${part("month")}-${part("day")} ${part("hour")}:${part("minute")}`;
}

/** The title a page's `<time>` carries in the browser: local (playwright.config's zone), then UTC. */
export function localTitle(at: string): string {
  return `${calendar(at, "Asia/Kolkata")} local time (${calendar(at, "UTC")} UTC)`;
}

/** Waits until run `id` has succeeded (the API's status), up to 300 s. */
export async function waitForSuccess(request: APIRequestContext, id: number) {
  await expect
    .poll(async () => (await (await request.get(`/api/v1/runs/${id}`)).json()).status, { timeout: 300_000, intervals: [1000] })
    .toBe("succeeded");
}

/** Waits until the wasm bundle has hydrated the page (the frontend marks <body>). */
export async function hydrated(page: Page) {
  await expect(page.locator("body[data-hydrated='true']")).toHaveCount(1, { timeout: 30_000 });
}

/**
 * Issue 21 item 1: a sample's history charts draw a line for every run of the table under
 * them, coloured by architecture, with an HTML legend whose entries hide and show each line.
 */
export async function expectEveryRunDrawn(page: Page, trajectories: any[]) {
  const archs = ["small_cnn", "resnet18", "deit_small"];
  await expect(page.locator(".history-note")).toHaveAttribute("data-runs", String(trajectories.length));
  await expect(page.locator("table.history-table tbody tr")).toHaveCount(trajectories.length);
  for (const title of ["Probability of the true class per epoch", "Loss per epoch"]) {
    const chart = page.locator("figure.chart", { hasText: title });
    await expect(chart.locator("svg.line-chart")).toHaveAttribute("data-lines", String(trajectories.length));
    await expect(chart.locator("g.series")).toHaveCount(trajectories.length);
    for (const [i, t] of trajectories.entries()) {
      await expect(chart.locator(`g.series[data-series="${i}"] polyline`)).toHaveClass(new RegExp(`\\bseries-${archs.indexOf(t.arch)}\\b`));
    }
    const entries = chart.locator("ul.chart-legend button.legend-entry");
    await expect(entries).toHaveCount(trajectories.length);
    await expect(entries.first()).toContainText(`#${trajectories[0].run_id} `);
    await expect(entries.first()).toContainText("(this run)");
  }
  // Hiding the last run's line in one chart hides it there only; a second click brings it back.
  const chart = page.locator("figure.chart", { hasText: "Loss per epoch" });
  const last = trajectories.length - 1;
  const entry = chart.locator(`button.legend-entry[data-series="${last}"]`);
  const line = chart.locator(`g.series[data-series="${last}"] polyline`);
  await expect(entry).toContainText(`#${trajectories[last].run_id} `);
  await expect(line).toBeVisible();
  await entry.click();
  await expect(entry).toHaveAttribute("aria-pressed", "false");
  await expect(line).toBeHidden();
  await expect(page.locator(`figure.chart:has-text("Probability of the true class") g.series[data-series="${last}"] polyline`)).toBeVisible();
  await entry.click();
  await expect(entry).toHaveAttribute("aria-pressed", "true");
  await expect(line).toBeVisible();
}

/**
 * Issue 21 item 7: the launch form queues nothing unseen. Launch shows what would be queued;
 * "Queue it" queues it. Returns the summary it showed.
 */
export async function queueFromForm(page: Page): Promise<string> {
  await page.click("main button.launch-review-button");
  const summary = page.locator("main .launch-summary");
  await expect(summary).toBeVisible();
  const text = (await summary.textContent())!;
  await page.click("main button.queue-it");
  return text;
}
