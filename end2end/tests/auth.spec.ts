import { ADMIN_STATE, expect, hydrated, queueFromForm, test } from "./helpers";

// These tests start signed out: they sign in themselves.
test.use({ storageState: { cookies: [], origins: [] } });

const password = "e2e password 42";
// Names new to the server, so the suite can run again against the same one.
const unique = (name: string) => `${name}-${Date.now().toString(36)}`;

test("a member signs in, launches a run from the form, and signs out", async ({ page, request }) => {
  const mia = unique("mia");
  const made = await request.post("/api/v1/users", { data: { name: mia, password, role: "member" } });
  expect(made.status()).toBe(201);

  await page.goto("/jobs");
  await expect(page).toHaveURL(/\/login\?next=%2Fjobs$/);
  await page.fill("input[name=name]", mia);
  await page.fill("input[name=password]", "not her password");
  await page.click("button[type=submit]");
  await expect(page.getByRole("alert")).toContainText("wrong user name or password");
  await page.fill("input[name=name]", mia);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await expect(page).toHaveURL(/\/jobs$/);
  await hydrated(page);
  await expect(page.locator(".whoami")).toHaveText(`${mia} · member`);

  await page.getByRole("link", { name: "Launch", exact: true }).click();
  await expect(page.locator("h1")).toHaveText("Launch a run");
  await hydrated(page);
  // Long enough that it cannot finish before it is cancelled (a 1-epoch run could, and did).
  await page.fill("input[name=epochs]", "300");
  await page.fill("input[name=train_subset]", "64");
  await page.fill("input[name=val_subset]", "32");
  await queueFromForm(page);
  await expect(page).toHaveURL(/\/jobs\?launched=\d+/);
  const runId = Number(new URL(page.url()).searchParams.get("launched"));
  const run = await (await request.get(`/api/v1/runs/${runId}`)).json();
  expect(run.owner).toBe(mia);
  // Her own run has a cancel button.
  await expect(page.getByRole("button", { name: `Cancel run #${runId}` })).toHaveCount(1);
  await page.getByRole("button", { name: `Cancel run #${runId}` }).click();
  await expect.poll(async () => (await (await request.get(`/api/v1/runs/${runId}`)).json()).status, { timeout: 60_000 }).toBe("cancelled");

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto("/jobs");
  await expect(page).toHaveURL(/\/login\?next=/);
});

test("a viewer sees no launch controls and a direct POST is refused", async ({ page, request }) => {
  const val = unique("val");
  expect((await request.post("/api/v1/users", { data: { name: val, password, role: "viewer" } })).status()).toBe(201);
  const theirs = await request.post("/api/v1/runs", { data: { dataset: "fashion-mnist", arch: "small_cnn", epochs: 1, train_subset: 16, device: "cpu" } });
  const runId: number = (await theirs.json()).id;

  await page.goto("/login");
  await page.fill("input[name=name]", val);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await expect(page).toHaveURL(/\/$/);
  await hydrated(page);
  await expect(page.locator(".whoami")).toHaveText(`${val} · viewer`);
  await expect(page.getByRole("link", { name: "Launch", exact: true })).toHaveCount(0);
  await expect(page.getByRole("link", { name: "Launch a run" })).toHaveCount(0);
  await page.goto("/jobs");
  await expect(page.locator(`tr[data-run="${runId}"]`)).toHaveCount(1);
  await expect(page.getByRole("button", { name: `Cancel run #${runId}` })).toHaveCount(0);
  await page.goto("/launch");
  await expect(page.locator(".empty")).toContainText("Viewers browse runs but cannot launch");

  // Straight to the API with the viewer's session and its CSRF token: refused by role.
  const account = JSON.parse((await page.locator("meta[name=forgetlab-account]").getAttribute("content"))!);
  const direct = await page.request.post("/api/v1/runs", {
    headers: { "X-CSRF-Token": account.csrf },
    data: { dataset: "fashion-mnist", arch: "small_cnn", epochs: 1 },
  });
  expect(direct.status()).toBe(403);
  expect((await direct.json()).message).toContain("viewer");
  const cancel = await page.request.post(`/api/v1/runs/${runId}/cancel`, { headers: { "X-CSRF-Token": account.csrf } });
  expect(cancel.status()).toBe(403);
  // Without the CSRF token the session cannot change anything at all.
  const forged = await page.request.post("/api/v1/tokens", { data: { name: "x" } });
  expect(forged.status()).toBe(403);
  expect((await request.post(`/api/v1/runs/${runId}/cancel`)).status()).toBe(200);
});

// Issue 21, item 14: the site has an icon, served to browsers that are not signed in.
test("the favicon is linked from every page and served signed out", async ({ page }) => {
  const icon = await page.request.get("/favicon.svg");
  expect(icon.status()).toBe(200);
  expect(icon.headers()["content-type"]).toContain("image/svg+xml");
  await page.goto("/login");
  await expect(page.locator("head link[rel=icon]")).toHaveAttribute("href", "/favicon.svg");
  // A skip link first on every page, to the page's own content (issue 21 item 15).
  await expect(page.locator("body a").first()).toHaveClass("skip-link");
  await expect(page.locator("a.skip-link")).toHaveAttribute("href", "#content");
  await expect(page.locator("main#content")).toHaveCount(1);
});

test("an administrator resets a member's password and disables her, each after a second click, and never their own account", async ({ browser, request, baseURL }) => {
  const nia = unique("nia");
  expect((await request.post("/api/v1/users", { data: { name: nia, password, role: "member" } })).status()).toBe(201);
  const context = await browser.newContext({ storageState: ADMIN_STATE });
  const page = await context.newPage();
  await page.goto("/admin/users");
  await hydrated(page);
  // One's own row: no role select, no disable, no reset.
  const own = page.locator(`tr[data-account="${process.env.FORGETLAB_ADMIN_USER}"]`);
  await expect(own).toHaveAttribute("data-own", "true");
  await expect(own.locator("select, button")).toHaveCount(0);
  await expect(own).toContainText("another administrator can change it");

  // A reset opens with a second click, and the new password works at once (HTTP Basic).
  const row = page.locator(`tr[data-account="${nia}"]`);
  await expect(row.locator("form.reset-form")).toBeHidden();
  await row.locator("summary", { hasText: "Reset password" }).click();
  await row.locator("form.reset-form input[name=password]").fill("nia's new password 7");
  await row.locator("form.reset-form button[type=submit]").click();
  await expect(page.locator("p.notice[role=status]", { hasText: "password was reset" })).toContainText(`${nia}'s password was reset`);
  const basic = (secret: string) => ({ Authorization: `Basic ${Buffer.from(`${nia}:${secret}`).toString("base64")}` });
  // Without the page's session cookie, the password alone: HTTP Basic makes a token with it (201) or is refused.
  const me = async (secret: string) =>
    (await fetch(`${baseURL}/api/v1/tokens`, { method: "POST", headers: { ...basic(secret), "Content-Type": "application/json" }, body: JSON.stringify({ name: "check" }) })).status;
  expect(await me("nia's new password 7")).toBe(201);
  expect(await me(password)).toBe(401);

  // Disabling says what it does before it does it.
  await expect(row.locator("button", { hasText: `Disable ${nia}` })).toBeHidden();
  await row.locator("summary", { hasText: "Disable" }).click();
  await expect(row.locator(".confirm-body").first()).toContainText("signed out everywhere");
  await row.locator("button", { hasText: `Disable ${nia}` }).click();
  await expect(page.locator(`tr[data-account="${nia}"]`)).toContainText("disabled");
  expect(await me("nia's new password 7")).toBe(401);
  // The JSON API refuses a change to one's own account too.
  const self = await request.patch(`/api/v1/users/${process.env.FORGETLAB_ADMIN_USER}`, { data: { disabled: true } });
  expect(self.status()).toBe(409);
  expect(await self.text()).toContain("your own account");
  await context.close();
});
