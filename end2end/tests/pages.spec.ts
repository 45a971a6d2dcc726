import AxeBuilder from "@axe-core/playwright";
import { Browser, Page } from "@playwright/test";
import { expect, hydrated, test, waitForSuccess } from "./helpers";

// Issue 21 items 13 and 15: every page, signed in and out, passes axe-core without a serious
// or critical violation, and at 390 px wide the page itself never scrolls sideways and the
// navigation stays reachable. The pages are filled by a study of two small runs made here.

const tag = `pages-${Date.now()}`;
let study = 0;
let runs: number[] = [];
let sampleKey = "";


test.beforeAll(async ({ request }) => {
  test.setTimeout(400_000);
  const made = await request.post("/api/v1/studies", {
    data: {
      name: `every page ${tag}`,
      archs: ["small_cnn"],
      seeds: [1, 2],
      base: { dataset: "fashion-mnist", epochs: 3, warmup_epochs: 1, train_subset: 300, val_subset: 100, batch_size: 32, lr: 0.05, device: "cpu", tags: [tag] },
    },
  });
  expect(made.status(), await made.text()).toBe(201);
  const launched = await made.json();
  study = launched.id;
  runs = launched.runs;
  for (const id of runs) await waitForSuccess(request, id);
  const samples = await (await request.get(`/api/v1/runs/${runs[0]}/samples?limit=1`)).json();
  sampleKey = samples.samples[0].sample_key;
});

/** The pages a signed-in administrator reaches, by name and URL. */
function signedInPages(): [string, string][] {
  return [
    ["runs", "/"],
    ["runs filtered", `/?tag=${tag}`],
    ["launch", "/launch"],
    ["jobs", "/jobs"],
    ["run", `/runs/${runs[0]}`],
    ["samples", `/runs/${runs[0]}/samples`],
    ["sample", `/runs/${runs[0]}/samples/${sampleKey}`],
    ["compare", `/compare?runs=${runs.join(",")}`],
    ["studies", "/studies"],
    ["study", `/studies/${study}`],
    ["datasets", "/datasets"],
    ["account", "/account"],
    ["users", "/admin/users"],
    ["missing run", "/runs/999999"],
    ["missing study", "/studies/999999"],
  ];
}

/** axe-core's serious and critical violations of the page, as lines that name each node. */
async function seriousViolations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}): ${n.target.join(" ")}: ${n.failureSummary?.split("\n").join(" ")}`));
}

/** Whether the page itself scrolls sideways (its own wide boxes may scroll inside them). */
async function pageOverflow(page: Page): Promise<string | null> {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth <= width + 1) return null;
    // Name the widest element that sticks out, to say what to fix.
    let worst = "";
    let right = width;
    for (const element of Array.from(document.querySelectorAll("body *"))) {
      const box = element.getBoundingClientRect();
      if (box.right > right + 1 && getComputedStyle(element).position !== "fixed") {
        let inScroller = false;
        for (let up = element.parentElement; up; up = up.parentElement) {
          const overflow = getComputedStyle(up).overflowX;
          if (overflow === "auto" || overflow === "scroll" || overflow === "hidden") inScroller = true;
        }
        if (!inScroller) {
          right = box.right;
          worst = `${element.tagName.toLowerCase()}.${element.className}`;
        }
      }
    }
    return `scrollWidth ${document.documentElement.scrollWidth} > ${width}: widest ${worst} (right edge ${Math.round(right)})`;
  });
}

test("axe-core finds no serious or critical violation on any page", async ({ page, browser }) => {
  test.setTimeout(300_000);
  const found: string[] = [];
  for (const [name, url] of signedInPages()) {
    await page.goto(url);
    await hydrated(page);
    for (const line of await seriousViolations(page)) found.push(`${name} ${url}: ${line}`);
  }
  // Signed out: the sign-in page.
  const context = await browser.newContext({ storageState: { cookies: [], origins: [] } });
  const anonymous = await context.newPage();
  await anonymous.goto("/login");
  for (const line of await seriousViolations(anonymous)) found.push(`login: ${line}`);
  await context.close();
  expect(found, found.join("\n")).toEqual([]);
});

async function narrow(browser: Browser, signedIn: boolean) {
  const options = { viewport: { width: 390, height: 844 }, ...(signedIn ? {} : { storageState: { cookies: [], origins: [] } }) };
  return browser.newContext(options);
}

test("at 390 px every page fits the screen and its navigation is reachable", async ({ browser }) => {
  test.setTimeout(300_000);
  const context = await narrow(browser, true);
  const page = await context.newPage();
  const found: string[] = [];
  for (const [name, url] of signedInPages()) {
    await page.goto(url);
    await hydrated(page);
    const overflow = await pageOverflow(page);
    if (overflow) found.push(`${name} ${url}: ${overflow}`);
    // Every top-bar link can be seen and clicked without scrolling the page sideways.
    const links = page.locator("header.topbar nav a");
    for (const link of await links.all()) {
      await expect(link, `${name}: ${await link.textContent()}`).toBeInViewport();
    }
    await expect(page.locator("header.topbar .account-menu button[type=submit]")).toBeInViewport();
  }
  // The navigation works there: Studies, then back to the runs.
  await page.goto("/");
  await hydrated(page);
  await page.locator("header.topbar nav a", { hasText: "Studies" }).click();
  await page.waitForURL(/\/studies$/);
  await page.locator("header.topbar nav a", { hasText: "Runs" }).click();
  await page.waitForURL((url) => url.pathname === "/");
  await context.close();

  const anonymous = await (await narrow(browser, false)).newPage();
  await anonymous.goto("/login");
  const overflow = await pageOverflow(anonymous);
  if (overflow) found.push(`login: ${overflow}`);
  await anonymous.context().close();
  expect(found, found.join("\n")).toEqual([]);
});
