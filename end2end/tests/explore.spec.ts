import { expect, expectEveryRunDrawn, hydrated, localTitle, test, waitForSuccess } from "./helpers";

// Two small runs over the same Fashion-MNIST subset (different seeds), shared by the tests.
const tag = `explore-${Date.now()}`;
let runs: number[] = [];


test.beforeAll(async ({ request }) => {
  test.setTimeout(400_000);
  for (const seed of [11, 12]) {
    const response = await request.post("/api/v1/runs", {
      data: { dataset: "fashion-mnist", arch: "small_cnn", epochs: 4, warmup_epochs: 1, train_subset: 600, val_subset: 200, batch_size: 32, lr: 0.05, seed, device: "cpu", tags: [tag], owner: "e2e" },
    });
    expect(response.status()).toBe(201);
    runs.push((await response.json()).id);
  }
  for (const id of runs) await waitForSuccess(request, id);
});

test("the runs table filters by tag, sorts by a column and sends the ticked runs to the compare page", async ({ page, request }) => {
  await page.goto("/");
  await hydrated(page);
  // Issue 21 item 6: the owner and tag filters offer the values runs have, not free text.
  const tagChoices = await page.locator("select[name=tag] option").evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
  expect(tagChoices[0]).toBe("");
  expect(tagChoices).toContain(tag);
  expect([...tagChoices.slice(1)].sort()).toEqual(tagChoices.slice(1));
  await expect(page.locator("select[name=owner] option[value=e2e]")).toHaveCount(1);
  await page.selectOption("select[name=tag]", tag);
  await page.click("form.filters button[type=submit]");
  await page.waitForURL(new RegExp(`tag=${tag}`));
  const rows = page.locator("table.runs-table tbody tr");
  await expect(rows).toHaveCount(2);
  const listed = await (await request.get(`/api/v1/runs?tag=${tag}`)).json();
  expect(await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.getAttribute("data-run"))))).toEqual(listed.map((r: any) => r.id));

  // Sorting by seed, ascending: the lower seed first, the header marked.
  await page.click("th >> text=Seed");
  await page.waitForURL(/sort=seed/);
  await expect(page.locator("th[aria-sort=ascending]")).toContainText("Seed");
  await expect(rows.first()).toHaveAttribute("data-run", String(runs[0]));
  await expect(page.locator("select[name=tag]")).toHaveValue(tag);

  // One display name per architecture; the page's runs grouped by architecture (issue 21 item 11).
  await expect(rows.first().locator("td[data-arch=small_cnn]")).toHaveText("Small CNN");
  const sorted = await (await request.get(`/api/v1/runs?tag=${tag}`)).json();
  const accuracies = sorted.map((r: any) => r.final_val_accuracy);
  const group = page.locator("table.arch-summary tr[data-arch=small_cnn]");
  await expect(group).toHaveAttribute("data-runs", "2");
  expect(Number(await group.getAttribute("data-mean"))).toBeCloseTo((accuracies[0] + accuracies[1]) / 2, 12);
  // Created: relative to the reader's clock, titled in the reader's zone; the stored time kept.
  const first = sorted.find((r: any) => r.id === runs[0]);
  const created = rows.first().locator("td.created time");
  await expect(created).toHaveAttribute("datetime", first.created_at);
  await expect(created).toHaveText(/^(just now|\d+ min ago)$/);
  await expect(created).toHaveAttribute("title", localTitle(first.created_at));
  // Compare waits for two ticked runs.
  const compare = page.locator("button", { hasText: "Compare selected runs" });
  await expect(compare).toBeDisabled();
  await page.check(`input[name=run][value="${runs[0]}"]`);
  await expect(compare).toBeDisabled();
  await page.check(`input[name=run][value="${runs[1]}"]`);
  await expect(compare).toBeEnabled();
  await page.click("text=Compare selected runs");
  await page.waitForURL(/\/compare\?/);
  await expect(page.locator("h1")).toHaveText("Compare runs");
  const comparison = await (await request.get(`/api/v1/compare?runs=${runs.join(",")}&q=0.1&pair=${runs.join(",")}`)).json();
  // The Jaccard heatmap's off-diagonal cell is the API's value; the set algebra's counts too.
  const cell = page.locator(`figure.heatmap >> nth=0 >> g.cell[data-row="0"][data-column="1"]`);
  expect(Number(await cell.getAttribute("data-value"))).toBeCloseTo(comparison.jaccard[0][1], 12);
  const counts = await page.locator(".sample-set .count").evaluateAll((spans) => spans.map((s) => Number(s.getAttribute("data-count"))));
  expect(counts).toEqual([comparison.pair.both.count, comparison.pair.only_a.count, comparison.pair.only_b.count]);
  await expect(page.locator("[data-finding=cross-seed]")).toContainText("over 1 pairs");
  await expect(page.locator("svg.grid-chart")).toHaveCount(1);
  // A different q from the form: the sets shrink with it.
  await page.fill("input[name=q]", "0.05");
  await page.click("form.compare-controls button[type=submit]");
  await page.waitForURL(/q=0.05/);
  await expect(page.locator(".lede")).toContainText("q = 0.05");
  // Every score says which end is "more forgotten", and the sets take that end (issue 17).
  await expect(page.locator(".lede")).toHaveAttribute("data-direction", "higher");
  await page.selectOption("select[name=score]", "confidence");
  await page.click("form.compare-controls button[type=submit]");
  await page.waitForURL(/score=confidence/);
  await expect(page.locator(".lede")).toHaveAttribute("data-direction", "lower");
  await expect(page.locator(".lede")).toContainText("takes the lower values");
  await expect(page.locator("select[name=score] option[value=tau]")).toHaveText("decay constant tau (lower is more forgotten)");
});

test("the run page draws the data map and the confusion heatmap from the API's numbers", async ({ page, request }) => {
  const id = runs[0];
  await page.goto(`/runs/${id}`);
  await hydrated(page);
  const map = await (await request.get(`/api/v1/runs/${id}/datamap`)).json();
  const svg = page.locator(".data-map svg.grid-chart");
  await expect(svg).toHaveAttribute("data-points", String(map.grid.points));
  expect(map.grid.points + map.grid.missing).toBe(600);
  const drawn = await svg.locator("rect.grid-cell").evaluateAll((rects) => rects.reduce((n, r) => n + Number(r.getAttribute("data-count")), 0));
  expect(drawn).toBe(map.grid.points);
  // Ten classes: a 10 x 10 heatmap whose rows are shares summing to 1.
  const detail = await (await request.get(`/api/v1/runs/${id}`)).json();
  const cells = page.locator(".confusion g.cell");
  await expect(cells).toHaveCount(100);
  const first = detail.val_confusion[0];
  const total = first.reduce((a: number, b: number) => a + b, 0);
  expect(Number(await cells.first().getAttribute("data-value"))).toBeCloseTo(first[0] / total, 12);
});

test("the sample browser filters on the server, and a sample shows its history in both runs", async ({ page, request }) => {
  const [id, other] = runs;
  await page.goto(`/runs/${id}/samples`);
  await hydrated(page);
  await page.selectOption("select[name=never_learned]", "false");
  await page.fill("input[name=min_forgetting_events]", "1");
  await page.selectOption("select[name=sort]", "-confidence");
  await page.click("form.sample-filters button[type=submit]");
  await page.waitForURL(/min_forgetting_events=1/);
  const api = await (await request.get(`/api/v1/runs/${id}/samples?never_learned=false&min_forgetting_events=1&sort=-confidence&limit=60`)).json();
  const grid = page.locator("ul.sample-grid");
  if (api.total === 0) {
    await expect(page.locator(".empty")).toContainText("No sample matches");
    return;
  }
  await expect(grid).toHaveAttribute("data-total", String(api.total));
  const keys = await grid.locator(".thumb").evaluateAll((lis) => lis.map((li) => li.getAttribute("data-sample-key")));
  expect(keys).toEqual(api.samples.map((s: any) => s.sample_key));
  // Each card writes the class predicted at the run's last epoch, as the API gives it (issue 21 item 12).
  const names = (await (await request.get(`/api/v1/runs/${id}`)).json()).class_names;
  const predicted = grid.locator(".thumb .thumb-predicted");
  await expect(predicted).toHaveCount(api.samples.length);
  expect(await predicted.allTextContents()).toEqual(
    api.samples.map((s: any) => `predicted ${names[s.last_predicted]} (${s.last_predicted === s.label ? "right" : "wrong"})`),
  );
  const image = grid.locator(".thumb img").first();
  await expect.poll(() => image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBe(28);

  await grid.locator(".thumb a").first().click();
  await page.waitForURL(new RegExp(`/runs/${id}/samples/${keys[0]}`));
  await expect(page.locator("dd[data-stat=forgetting_events]")).toHaveText(String(api.samples[0].forgetting_events));
  // This run first, then every other finished run over the dataset that holds the sample
  // (the other seed's run among them; earlier tests' runs may hold it too).
  const trajectory = await (await request.get(`/api/v1/runs/${id}/samples/${keys[0]}`)).json();
  const history = page.locator("table.history-table tbody tr");
  await expect(history).toHaveCount(1 + trajectory.other_runs.length);
  await expect(history.first()).toHaveAttribute("data-run", String(id));
  expect(trajectory.other_runs.map((r: any) => r.run_id)).toContain(other);
  await expect(page.locator(`table.history-table tr[data-run="${other}"]`)).toHaveCount(1);
  const marks = await history.first().locator(".strip span").allTextContents();
  expect(marks).toEqual(trajectory.this_run.correct.map((c: number) => (c === 1 ? "■" : "□")));
  await expect(page.locator("svg.line-chart")).toHaveCount(2);
  await expectEveryRunDrawn(page, [trajectory.this_run, ...trajectory.other_runs]);
  // The predicted class is written out, not only in a tooltip.
  const last = trajectory.this_run.predicted[trajectory.this_run.predicted.length - 1];
  await expect(page.locator("dd[data-stat=last_prediction]")).toContainText(names[last]);
  expect(api.samples[0].last_predicted, "the card's prediction is the last epoch's").toBe(last);
  await expect(history.first().locator("td.last-prediction")).toContainText(names[last]);

  // Previous and next follow the browser's filtered order and keep its filters (issue 21 item 12).
  expect(page.url()).toContain("min_forgetting_events=1");
  const nav = page.locator("nav.sample-nav");
  await expect(nav).toHaveAttribute("data-at", "0");
  await expect(nav).toHaveAttribute("data-total", String(api.total));
  await expect(nav.locator("a[rel=prev]")).toHaveCount(0);
  if (api.samples.length > 1) {
    await nav.locator("a[rel=next]").click();
    await page.waitForURL(new RegExp(`/runs/${id}/samples/${keys[1]}\\?.*at=1`));
    expect(page.url()).toContain("sort=-confidence");
    await expect(page.locator("dd[data-stat=forgetting_events]")).toHaveText(String(api.samples[1].forgetting_events));
    await expect(page.locator("nav.sample-nav a[rel=prev]")).toHaveAttribute("href", new RegExp(`/samples/${keys[0]}\\?.*at=0`));
    await page.click("nav.sample-nav a.small-link");
    await page.waitForURL(/\/samples\?.*min_forgetting_events=1/);
    await expect(page.locator("ul.sample-grid .thumb")).toHaveCount(keys.length);
  }
});

test("a bad filter says which parameter to fix", async ({ page }) => {
  await page.goto(`/runs/${runs[0]}/samples?min_tau=abc`);
  await expect(page.locator("p.error")).toContainText("min tau must be a number");
});

test("a chart saves as a standalone SVG file with its colours inlined", async ({ page }) => {
  await page.goto(`/runs/${runs[0]}`);
  await hydrated(page);
  const figure = page.locator("figure.chart", { hasText: "Accuracy per epoch" });
  const [download] = await Promise.all([page.waitForEvent("download"), figure.locator("button.svg-button").click()]);
  expect(download.suggestedFilename()).toBe("accuracy-per-epoch.svg");
  const path = await download.path();
  const text = require("fs").readFileSync(path, "utf8");
  expect(text.startsWith("<?xml")).toBe(true);
  expect(text).toContain('xmlns="http://www.w3.org/2000/svg"');
  // The lines carry their colour in the file itself, not in the page's stylesheet.
  expect(text).toMatch(/<polyline[^>]*style="[^"]*stroke:\s*rgb\(/);
  // Its legend comes along below the plot (on the page, the legend is HTML under the chart).
  await expect(figure.locator("ul.chart-legend button.legend-entry")).toHaveText(["train", "validation"]);
  const legend = await page.evaluate((svg) => Array.from(new DOMParser().parseFromString(svg, "image/svg+xml").querySelectorAll("text.legend")).map((t) => t.textContent), text);
  expect(legend).toEqual(["train", "validation"]);
  const height = Number(/viewBox="0 0 560 ([\d.]+)"/.exec(text)![1]);
  expect(height).toBeGreaterThan(280);
});

/** `{"a": {"b": 1}}` -> `[["a.b", "1"]]`: every stored field of a spec, as the run page lists them. */
function flatten(value: any, at = "", out: [string, string][] = []): [string, string][] {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [name, field] of Object.entries(value)) flatten(field, at ? `${at}.${name}` : name, out);
  } else {
    out.push([at, typeof value === "string" ? value : JSON.stringify(value)]);
  }
  return out;
}

test("a run page shows all its parameters, the device used, and its lineage both ways", async ({ page, request }) => {
  const source = runs[0];
  // A run that prunes by the source run's forgetting events; cancelled at once, its lineage stays.
  const response = await request.post("/api/v1/runs", {
    data: {
      dataset: "fashion-mnist", arch: "small_cnn", epochs: 4, warmup_epochs: 1, train_subset: 600, val_subset: 200, batch_size: 32, lr: 0.05, seed: 13, device: "cpu", tags: [tag], owner: "e2e",
      sampling: { kind: "prune", budget: 0.5, source_run: source, score: "forgetting_events", keep: "top" },
    },
  });
  expect(response.status(), await response.text()).toBe(201);
  const pruned = (await response.json()).id;
  expect((await request.post(`/api/v1/runs/${pruned}/cancel`)).status()).toBe(200);

  const detail = await (await request.get(`/api/v1/runs/${pruned}`)).json();
  expect(detail.source_runs.map((r: any) => r.id)).toEqual([source]);
  await page.goto(`/runs/${pruned}`);
  await hydrated(page);
  await expect(page.locator("dd[data-sampling]")).toHaveAttribute("data-sampling", "prune");
  await expect(page.locator("dd[data-sampling]")).toContainText(`#${source}`);
  await expect(page.locator("dd[data-sampling]")).toContainText("budget 0.5");
  await page.click(`.lineage-sources li[data-run="${source}"] a`);
  await page.waitForURL(new RegExp(`/runs/${source}$`));
  // The source names its derived run: the link goes back.
  await expect(page.locator(`.lineage-derived li[data-run="${pruned}"]`)).toContainText("prune selection");
  await expect(page.locator(`.lineage-derived li[data-run="${pruned}"] a`)).toHaveAttribute("href", `/runs/${pruned}`);

  // The source run: the device its worker used beside the one asked for, when it ran, and tags.
  const run = await (await request.get(`/api/v1/runs/${source}`)).json();
  const used = run.progress.device as string;
  expect(used.startsWith("cpu")).toBe(true);
  await expect(page.locator('dd[data-field="Device"]')).toHaveText(`${used} (requested cpu)`);
  // Times are the stored UTC ones in `datetime`, written relative to the reader's clock, with
  // the local date and time as the title (issue 21 item 11).
  await expect(page.locator('dd[data-field="Started"] time')).toHaveAttribute("datetime", run.started_at);
  await expect(page.locator('dd[data-field="Finished"] time')).toHaveAttribute("datetime", run.finished_at);
  await expect(page.locator('dd[data-field="Finished"] time')).toHaveText(/^(just now|\d+ min ago)$/);
  await expect(page.locator('dd[data-field="Finished"] time')).toHaveAttribute("title", localTitle(run.finished_at));
  const seconds = (Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000;
  await expect(page.locator('dd[data-field="Duration"]')).toContainText(seconds < 60 ? `${seconds} s` : `${Math.floor(seconds / 60)} min`);
  await expect(page.locator('dd[data-field="Tags"]')).toHaveText(tag);
  await expect(page.locator('dd[data-field="Learning-rate schedule"]')).toHaveText(run.spec.schedule);
  await expect(page.locator('dd[data-field="Optimizer"]')).toContainText(`weight decay ${run.spec.weight_decay}`);
  // Every stored field of the spec is a row of "all parameters", with the API's value.
  const expected = flatten(run.spec).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  await page.click("details.all-parameters summary");
  const rows = page.locator("details.all-parameters tr[data-parameter]");
  await expect(rows).toHaveCount(expected.length);
  const shown = await rows.evaluateAll((trs) => trs.map((tr) => [tr.getAttribute("data-parameter")!, tr.querySelectorAll("td")[1].textContent!]));
  expect(shown.map(([name]) => name)).toEqual(expected.map(([name]) => name));
  for (const [i, [name, value]] of expected.entries()) {
    const number = Number(value);
    if (value !== "" && !Number.isNaN(number)) expect(Number(shown[i][1]), name).toBe(number);
    else expect(shown[i][1], name).toBe(value);
  }
});

test("a run's name, tags and notes are edited on its page", async ({ page, request }) => {
  const id = runs[1];
  const before = await (await request.get(`/api/v1/runs/${id}`)).json();
  expect(before.name).toBe("small_cnn-fashion-mnist-s12");
  await page.goto(`/runs/${id}`);
  await hydrated(page);
  await expect(page.locator("h1 .run-name")).toHaveText(before.name);
  await page.locator("details.run-edit summary").click();
  const form = page.locator("form.run-edit-form");
  await form.locator("input[name=name]").fill("seed 12, the second of two");
  await form.locator("input[name=tags]").fill(`${tag}, edited`);
  await form.locator("textarea[name=notes]").fill("compared with seed 11 on the compare page");
  await form.locator("button[type=submit]").click();
  await expect(page.locator("h1 .run-name")).toHaveText("seed 12, the second of two");
  await expect(page.locator("p.run-notes")).toHaveText("compared with seed 11 on the compare page");
  const after = await (await request.get(`/api/v1/runs/${id}`)).json();
  expect([after.name, after.notes, after.tags]).toEqual(["seed 12, the second of two", "compared with seed 11 on the compare page", ["edited", tag].sort()]);
  // The runs table shows it by name.
  await page.goto(`/?tag=edited`);
  await expect(page.locator(`table.runs-table tr[data-run="${id}"] td.run-name`)).toHaveText("seed 12, the second of two");
});
