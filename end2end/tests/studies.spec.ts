import { expect, expectEveryRunDrawn, hydrated, test } from "./helpers";

test("a study launched from its preset fills its grid live and reports its findings", async ({ page, request }) => {
  test.setTimeout(900_000);
  await page.goto("/studies");
  await hydrated(page);
  // The small preset (ResNet-18 and DeiT-Small, 3 seeds, head warmup then fine-tuning),
  // made smaller still for a shared 2-core machine.
  await page.selectOption("select[name=preset]", "architecture-dependent-forgetting-small");
  await page.fill("input[name=name]", `e2e study ${Date.now()}`);
  await page.fill("input[name=train_subset]", "256");
  await page.fill("input[name=val_subset]", "64");
  // 4 fine-tuning epochs: the default window (fine-tuning) then holds the 3 lags a decay fit needs.
  await page.fill("input[name=epochs]", "4");
  await page.fill("input[name=device]", "cpu");
  // Every run of the study fits the weighted lag retention (issue 17: a setting, shown per finding).
  await page.selectOption("select[name=retention]", "a_weighted");
  await page.click("text=Launch the study");
  await page.waitForURL(/\/studies\/\d+$/);
  const id = Number(new URL(page.url()).pathname.split("/").pop());
  await hydrated(page);
  const cells = page.locator("td.grid-cell");
  await expect(cells).toHaveCount(6);
  // The grid fills from the event stream, without a reload.
  await page.evaluate(() => ((window as any).__noReload = true));
  await expect(page.locator("td.grid-cell[data-status=succeeded]")).toHaveCount(6, { timeout: 840_000 });
  expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);
  await expect(page.locator(".study-progress")).toHaveAttribute("data-succeeded", "6");

  // The report on the page is the API's: the findings and each architecture's accuracy.
  const study = await (await request.get(`/api/v1/studies/${id}`)).json();
  expect(study.archs).toEqual(["resnet18", "deit_small"]);
  const summary = study.report.comparison.summary;
  await expect(page.locator("tr[data-finding=cross-arch-all-pairs]")).toContainText(`over ${summary.cross_arch_pairs} pairs`);
  expect(summary.cross_arch_pairs).toBe(9);
  expect(summary.cross_seed_pairs).toBe(6);
  await expect(page.locator("tr[data-finding=cross-arch]")).toContainText("0.34 (OCT)");
  // Issue 21 item 9: a column per architecture, the paper named.
  await expect(page.locator("table.findings-table thead th[data-arch]")).toHaveText(["ResNet-18", "DeiT-Small"]);
  await expect(page.locator("table.findings-table thead")).toContainText("arXiv:2604.11508, 2026");
  await expect(page.locator(".paper-cited")).toContainText("Not All Forgetting Is Equal");
  await expect(page.locator("tr[data-finding=cross-seed-jaccard] td[data-arch]")).toHaveCount(2);
  // Per architecture: mean and median R², exclusions with their reasons, the AIC split.
  const fixed = (x: number | null) => (x === null ? "–" : x.toFixed(3));
  for (const a of summary.per_arch) {
    const [never, few, constant] = a.excluded_by_reason;
    expect(never + few + constant).toBe(a.excluded);
    await expect(page.locator(`tr[data-finding=r2] td[data-arch="${a.arch}"]`)).toContainText(
      `mean ${fixed(a.mean_r2)}, median ${fixed(a.median_r2)} over ${a.fitted} fits; excluded ${a.excluded} (${never} never learned, ${few} too few points, ${constant} constant); exponential beats the power law (AIC) in ${a.exponential_preferred} of ${a.fitted}`,
    );
  }
  const rows = page.locator("table.arms-table tbody tr");
  await expect(rows).toHaveCount(2);
  for (const arm of study.report.arms) {
    const row = page.locator(`table.arms-table tr[data-arch="${arm.arch}"]`);
    expect(Number(await row.getAttribute("data-accuracy"))).toBeCloseTo(arm.accuracy.mean, 12);
  }
  // Findings with their intervals over seeds, the arms' curves, and the report as a file.
  const cross = study.report.findings.find((f: any) => f.key === "cross_arch_jaccard");
  const crossRow = page.locator("table.intervals-table tr[data-key=cross_arch_jaccard]");
  expect(Number(await crossRow.getAttribute("data-mean"))).toBeCloseTo(cross.value.mean, 12);
  await expect(crossRow).toContainText(`(n = ${cross.value.n})`);
  expect(cross.value.n).toBe(3);
  // Issue 17: each finding with its epoch window, its retention definition, its n, its
  // interval method and the paper's number for that same statistic, as the API says.
  for (const f of study.report.findings) {
    const row = page.locator(`table.intervals-table tr[data-key=${f.key}][data-arch="${f.arch ?? ""}"]`);
    await expect(row).toHaveCount(1);
    await expect(row).toHaveAttribute("data-window", f.window);
    await expect(row).toHaveAttribute("data-retention", f.retention);
    await expect(row.locator("td.method")).toHaveText(f.method);
    if (f.value) await expect(row).toHaveAttribute("data-n", String(f.value.n));
    if (f.published !== null) await expect(row).toContainText(study.report.published[f.published].paper);
  }
  // Issue 21 item 4: one name per statistic. The same-seed and the all-pairs cross-architecture
  // Jaccard are different numbers under different names, each headline with its interval and
  // n, named the same in both tables (and on the compare page, below).
  const allPairs = study.report.findings.find((f: any) => f.key === "cross_arch_jaccard_all_pairs");
  expect(allPairs.value.mean).toBe(summary.cross_arch_jaccard);
  expect(allPairs.value.n).toBe(3);
  const shown = (i: any) => `${i.mean.toFixed(4)}${i.half_width === null ? "" : ` ± ${i.half_width.toFixed(4)}`} (n = ${i.n})`;
  await expect(page.locator("tr[data-finding=cross-arch]")).toContainText(shown(cross.value));
  await expect(page.locator("tr[data-finding=cross-arch-all-pairs]")).toContainText(shown(allPairs.value));
  expect(Number(await page.locator("tr[data-finding=cross-arch-all-pairs]").getAttribute("data-value"))).toBe(allPairs.value.mean);
  const headline = await page.locator("table.findings-table td.finding-name").allTextContents();
  expect(new Set(headline).size, `distinct names: ${headline}`).toBe(headline.length);
  const allPairsName = (await page.locator("tr[data-finding=cross-arch-all-pairs] td.finding-name").textContent())!;
  for (const key of ["cross_arch_jaccard", "cross_arch_jaccard_all_pairs"]) {
    const name = await page.locator(`table.findings-table tr[data-statistic=${key}] td.finding-name`).textContent();
    await expect(page.locator(`table.intervals-table tr[data-key=${key}] td.finding-name`)).toHaveText(name!);
  }
  const named = await page.locator("table.intervals-table tbody tr").evaluateAll((trs) => trs.map((tr) => [tr.getAttribute("data-key")!, tr.getAttribute("data-name")!]));
  const nameOf = new Map<string, string>();
  for (const [key, name] of named) {
    expect(nameOf.get(key) ?? name, `${key} has one name`).toBe(name);
    nameOf.set(key, name);
  }
  expect(new Set(nameOf.values()).size, "one statistic per name").toBe(nameOf.size);
  const r2 = study.report.findings.find((f: any) => f.key === "mean_r2");
  expect([r2.window, r2.retention]).toEqual(["fine_tuning", "a_weighted"]);
  await expect(page.locator(`table.intervals-table tr[data-key=mean_r2][data-arch="${r2.arch}"] td.retention`)).toHaveText("A weighted by the pairs at each lag: exp(-k/tau)");
  await expect(page.locator(`table.intervals-table tr[data-key=mean_r2][data-arch="${r2.arch}"] td.window`)).toHaveText("fine-tuning");
  expect(study.report.findings.filter((f: any) => f.key === "similar_classes_forgotten_most")).toHaveLength(2);
  // Issue 21 item 9: one chart per metric and x axis (not per architecture), each with a line
  // and a band per architecture (and selection), coloured by architecture as everywhere.
  await expect(page.locator(".study-curves figure.chart")).toHaveCount(4);
  const curveNames = study.report.curves.map((c: any) => `${c.arch === "resnet18" ? "ResNet-18" : "DeiT-Small"} · ${c.arm}`);
  expect(new Set(study.report.curves.map((c: any) => c.arch))).toEqual(new Set(["resnet18", "deit_small"]));
  for (const metric of ["accuracy", "macro_f1"]) {
    for (const x of ["epoch", "samples"]) {
      const chart = page.locator(`.study-curves .arm-curves[data-metric=${metric}][data-x=${x}]`);
      await expect(chart.locator("ul.chart-legend button.legend-entry")).toHaveText(curveNames);
      const bands = await chart.locator("polygon.band").evaluateAll((ps) => ps.map((p) => p.getAttribute("class")));
      expect(new Set(bands).size, `a band colour per architecture: ${bands}`).toBe(2);
    }
  }
  const download = page.waitForEvent("download");
  await page.click("a.report-download");
  const file = await download;
  expect(file.suggestedFilename()).toBe(`study-${id}-report.html`);
  const html = require("fs").readFileSync(await file.path(), "utf8");
  expect(html).toContain("Findings with 95 % intervals");
  expect(html).not.toContain("<script");
  await page.click("text=Open the full comparison");
  await page.waitForURL(/\/compare\?runs=/);
  await expect(page.locator("figure.heatmap")).toHaveCount(2);
  const compareCross = page.locator("li[data-finding=cross-arch]");
  await expect(compareCross).toHaveAttribute("data-statistic", "cross_arch_jaccard_all_pairs");
  await expect(compareCross.locator(".finding-name")).toHaveText(allPairsName);
  expect(Number(await compareCross.getAttribute("data-value"))).toBe(allPairs.value.mean);
  await expect(compareCross).toContainText(`${allPairs.value.mean.toFixed(4)} over ${summary.cross_arch_pairs} pairs`);
  // Issue 21 item 8: the default pair is two architectures; the parameters that differ; the
  // runs' validation curves overlaid; classes by name; another pair picked from a select.
  const compared = study.report.comparison.runs;
  const auto = (await (await request.get(`/api/v1/compare?runs=${compared.join(",")}&q=0.1&pair=auto`)).json()).pair;
  const archOf = (id: number) => study.runs.find((r: any) => r.run.id === id).arch;
  expect(archOf(auto.a)).not.toBe(archOf(auto.b));
  await expect(page.locator("section.pair")).toHaveAttribute("data-pair", `${auto.a},${auto.b}`);
  await expect(page.locator(".differ-table tr[data-parameter=arch]")).toHaveCount(1);
  await expect(page.locator(".differ-table tr[data-parameter=seed]")).toHaveCount(1);
  await expect(page.locator(".differ-table tr[data-parameter=dataset]")).toHaveCount(0);
  await expect(page.locator("figure.chart", { hasText: "Validation accuracy per epoch" }).locator("g.series")).toHaveCount(compared.length);
  const classNames = (await (await request.get(`/api/v1/runs/${compared[0]}`)).json()).class_names;
  await expect(page.locator("table.class-forgetting tr[data-class='0'] td").first()).toHaveText(classNames[0]);
  const other = `${compared[0]},${compared[1]}`;
  await page.selectOption("form.pair-picker select[name=pair]", other);
  await page.click("form.pair-picker button[type=submit]");
  await page.waitForURL(/pair=/);
  await expect(page.locator("section.pair")).toHaveAttribute("data-pair", other);
  // The two architectures compared on their seeds combined (forgetting events summed over seeds).
  const combined = (await (await request.get(`/api/v1/compare?runs=${study.report.comparison.runs.join(",")}&q=0.1`)).json()).seeds_combined;
  expect(combined.archs.sort()).toEqual(["deit_small", "resnet18"]);
  await expect(page.locator(".seeds-combined tr[data-arch]")).toHaveCount(2);
  await expect(page.locator(".seeds-combined")).toContainText("summed over seeds (Toneva et al. 2019)");
});

test("a sample's history draws every run that holds it, the study's DeiT-Small runs among them", async ({ page, request }) => {
  const [deit] = await (await request.get("/api/v1/runs?arch=deit_small&status=succeeded&limit=1")).json();
  expect(deit, "the study above leaves succeeded DeiT-Small runs").toBeTruthy();
  const [sample] = (await (await request.get(`/api/v1/runs/${deit.id}/samples?limit=1`)).json()).samples;
  const history = await (await request.get(`/api/v1/runs/${deit.id}/samples/${sample.sample_key}`)).json();
  const all = [history.this_run, ...history.other_runs];
  // The study's six runs share their training subset: every sample is in all of them.
  expect(all.filter((t: any) => t.arch === "deit_small").length).toBeGreaterThanOrEqual(3);
  expect(all.filter((t: any) => t.arch === "resnet18").length).toBeGreaterThanOrEqual(3);
  await page.goto(`/runs/${deit.id}/samples/${sample.sample_key}`);
  await hydrated(page);
  await expectEveryRunDrawn(page, all);
});
