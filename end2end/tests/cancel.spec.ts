import { ADMIN_STATE, expect, hydrated, test } from "./helpers";

test("a running job is cancelled from the jobs page, retried, and resumes to the end", async ({ page, request }) => {
  // Long enough to be caught running: ResNet-18, 2048 images at 32 px, 6 epochs.
  const launched = await request.post("/api/v1/runs", {
    data: { dataset: "fashion-mnist", arch: "resnet18", epochs: 6, train_subset: 2048, val_subset: 256, image_size: 32, batch_size: 32, lr: 0.02, seed: 3, device: "cpu" },
  });
  expect(launched.status()).toBe(201);
  const runId: number = (await launched.json()).id;
  const status = async () => (await (await request.get(`/api/v1/runs/${runId}`)).json()).status;

  await page.goto("/jobs");
  await hydrated(page);
  const running = page.locator(`tr.job[data-run="${runId}"][data-status="running"]`);
  await expect(running).toHaveCount(1, { timeout: 120_000 });
  await page.evaluate(() => ((window as any).__noReload = true));
  await running.getByRole("button", { name: `Cancel run #${runId}` }).click();
  await expect(running.locator(".action-note")).toContainText("Stopping at the next heartbeat");

  // The worker hears it at its next heartbeat; the row moves to the cancelled group live.
  const cancelled = page.locator(`section[data-status="cancelled"] tr.job[data-run="${runId}"]`);
  await expect(cancelled).toHaveCount(1, { timeout: 60_000 });
  expect(await status()).toBe("cancelled");
  const stored = (await (await request.get(`/api/v1/runs/${runId}`)).json()).epochs.length;
  expect(stored).toBeLessThan(6);

  await cancelled.getByRole("button", { name: `Retry run #${runId}` }).click();
  await expect(page.locator(`tr.job[data-run="${runId}"][data-status="cancelled"]`)).toHaveCount(0, { timeout: 30_000 });
  expect(["queued", "running", "succeeded"]).toContain(await status());
  expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);

  // It resumes after its last checkpoint and ends with every epoch stored once.
  await expect(page.locator(`section[data-status="succeeded"] tr.job[data-run="${runId}"]`)).toHaveCount(1, { timeout: 240_000 });
  const detail = await (await request.get(`/api/v1/runs/${runId}`)).json();
  expect(detail.status).toBe("succeeded");
  expect(detail.epochs.map((e: any) => e.epoch)).toEqual([1, 2, 3, 4, 5, 6]);
});

test("the cancel form works without JavaScript", async ({ browser, request }) => {
  const context = await browser.newContext({ javaScriptEnabled: false, storageState: ADMIN_STATE });
  const page = await context.newPage();
  // Queued behind nothing long: cancel it while queued or running, whichever the form sees.
  const launched = await request.post("/api/v1/runs", {
    data: { dataset: "fashion-mnist", arch: "resnet18", epochs: 8, train_subset: 2048, val_subset: 256, image_size: 32, batch_size: 32, seed: 4, device: "cpu" },
  });
  const runId: number = (await launched.json()).id;
  await page.goto("/jobs");
  await page.getByRole("button", { name: `Cancel run #${runId}` }).click();
  await page.waitForLoadState("load");
  await expect.poll(async () => (await (await request.get(`/api/v1/runs/${runId}`)).json()).status, { timeout: 60_000 }).toBe("cancelled");
  await page.goto("/jobs");
  await expect(page.locator(`section[data-status="cancelled"] tr.job[data-run="${runId}"]`)).toHaveCount(1);
  await context.close();
});
