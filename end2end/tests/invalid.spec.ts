import { ADMIN_STATE, expect, hydrated, queueFromForm, test } from "./helpers";

test("the form refuses invalid values with a message per field, keeps what was typed, and queues nothing", async ({ page, request }) => {
  const before = (await (await request.get("/api/v1/runs")).json()).length;
  await page.goto("/launch");
  await hydrated(page);
  await page.fill("input[name=epochs]", "0");
  await page.fill("input[name=lr]", "-0.5");
  await page.fill("input[name=train_subset]", "999999");
  await page.fill("input[name=batch_size]", "many");
  await page.fill("input[name=weights]", "../../etc/passwd");
  // Checked as typed: a number field says so before anything is sent (issue 21 item 6);
  // the decimal keyboard on number fields only; each error tied to its input.
  await expect(page.locator(".field-error[data-field=batch_size]")).toContainText('Batch size must be a number, got "many"');
  await expect(page.locator("input[name=batch_size]")).toHaveAttribute("aria-invalid", "true");
  await expect(page.locator("input[name=batch_size]")).toHaveAttribute("aria-describedby", "batch_size-hint batch_size-error");
  await expect(page.locator("input[name=lr]")).toHaveAttribute("inputmode", "decimal");
  expect(await page.locator("input[name=weights]").getAttribute("inputmode")).toBeNull();
  await queueFromForm(page);

  await expect(page.locator(".field-error[data-field=epochs]")).toContainText("from 1 to 1000, got 0");
  await expect(page.locator(".field-error[data-field=lr]")).toContainText("greater than 0");
  await expect(page.locator(".field-error[data-field=train_subset]")).toContainText("larger than fashion-mnist's 60000 training samples");
  await expect(page.locator(".field-error[data-field=batch_size]")).toContainText('got "many"');
  await expect(page.locator(".field-error[data-field=weights]")).toContainText("not a .safetensors file");
  await expect(page.locator("[role=alert]")).toContainText("5 fields to fix");
  // Nothing typed was lost, and the fields without errors show none.
  await expect(page.locator("input[name=epochs]")).toHaveValue("0");
  await expect(page.locator("input[name=lr]")).toHaveValue("-0.5");
  await expect(page.locator("input[name=batch_size]")).toHaveValue("many");
  await expect(page.locator(".field-error[data-field=seed]")).toHaveText("");
  expect(page.url()).toContain("/launch");

  const after = (await (await request.get("/api/v1/runs")).json()).length;
  expect(after).toBe(before);
});

test("the form's sample selection is checked field by field", async ({ page, request }) => {
  const before = (await (await request.get("/api/v1/runs")).json()).length;
  await page.goto("/launch");
  await hydrated(page);
  // Choices, not free text: the score and its end are selects; the source run offers the
  // succeeded runs while typed.
  await expect(page.locator("select[name=score] option[value=tau]")).toHaveCount(1);
  await expect(page.locator("select[name=keep] option[value=bottom]")).toHaveCount(1);
  await expect(page.locator("input[name=source_run]")).toHaveAttribute("list", "succeeded-runs");
  const succeeded = await (await request.get("/api/v1/runs?status=succeeded&limit=200")).json();
  await expect(page.locator("datalist#succeeded-runs option")).toHaveCount(succeeded.length);
  await page.selectOption("select[name=sampling]", "spaced_repetition");
  await page.fill("input[name=sampling_budget]", "1.5");
  await queueFromForm(page);
  await expect(page.locator(".field-error[data-field=source_run]")).toContainText("spaced_repetition needs source_run");
  await expect(page.locator(".field-error[data-field=sampling_budget]")).toContainText("1.5");
  await expect(page.locator("select[name=sampling]")).toHaveValue("spaced_repetition");
  expect((await (await request.get("/api/v1/runs")).json()).length).toBe(before);
});

test("the API refuses invalid specs and malformed JSON with JSON errors", async ({ request }) => {
  const bad = await request.post("/api/v1/runs", { data: { dataset: "fashion-mnist", arch: "small_cnn", epochs: 0, lr: -1 } });
  expect(bad.status()).toBe(422);
  const body = await bad.json();
  expect(body.errors.epochs).toContain("from 1 to 1000");
  expect(body.errors.lr).toContain("greater than 0");
  const malformed = await request.post("/api/v1/runs", { headers: { "content-type": "application/json" }, data: Buffer.from('{"epochs": ') });
  expect(malformed.status()).toBe(400);
  expect((await malformed.json()).message).toContain("request body was refused");
});

test("pages render on the server and read without JavaScript", async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false, storageState: ADMIN_STATE });
  const page = await context.newPage();
  await page.goto("/jobs");
  await expect(page.locator("h1")).toHaveText("Jobs");
  await page.goto("/launch");
  await expect(page.locator("select[name=dataset] option[value=fashion-mnist]")).toHaveCount(1);
  await context.close();
});

// Issue 21, item 14: a launch that never reaches the server says so and what it means.
test("a launch that cannot reach the server says the run was not queued", async ({ page }) => {
  await page.goto("/launch");
  await hydrated(page);
  await page.fill("input[name=epochs]", "1");
  await page.route("**/sf/**", (route) => route.abort("internetdisconnected"));
  await queueFromForm(page);
  await expect(page.locator("main [role=alert]")).toContainText("The server could not be reached, so your run was not queued");
  await page.unroute("**/sf/**");
});
