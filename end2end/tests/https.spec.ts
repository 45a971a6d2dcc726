import { expect, hydrated, test } from "./helpers";

// The documented HTTPS set-up (README, HTTPS): Caddy from Debian's package in front of the
// server, with its own local certificate authority (`tls internal`). scripts/test starts that
// Caddy in front of the suite's server and sets FORGETLAB_HTTPS_URL.
const httpsURL = process.env.FORGETLAB_HTTPS_URL;

test.describe("through Caddy over HTTPS", () => {
  test.skip(!httpsURL, "FORGETLAB_HTTPS_URL is not set: scripts/test starts Caddy and sets it");
  // Caddy's local authority is not in this browser's store; scripts/test checks the chain
  // against Caddy's root certificate with curl.
  test.use({ baseURL: httpsURL, ignoreHTTPSErrors: true, storageState: { cookies: [], origins: [] } });

  test("signs in through the proxy: a Secure __Host- cookie, HSTS, brotli, and the site hydrates", async ({ page, context }) => {
    const user = process.env.FORGETLAB_ADMIN_USER!;
    const login = await page.goto("/login");
    expect(login!.status()).toBe(200);
    const loginHeaders = await login!.allHeaders();
    expect(loginHeaders["strict-transport-security"]).toMatch(/max-age=\d+/);
    // Caddy passes the server's brotli through; Chromium asks for it only over HTTPS.
    expect(loginHeaders["content-encoding"]).toBe("br");

    await page.fill("input[name=name]", user);
    await page.fill("input[name=password]", process.env.FORGETLAB_ADMIN_PASSWORD!);
    await Promise.all([page.waitForURL((url) => !url.pathname.startsWith("/login")), page.click("button[type=submit]")]);
    expect(new URL(page.url()).origin).toBe(new URL(httpsURL!).origin);

    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === "__Host-forgetlab_session");
    expect(session, JSON.stringify(cookies.map((c) => c.name))).toBeTruthy();
    expect(session!.secure).toBe(true);
    expect(session!.httpOnly).toBe(true);
    expect(session!.path).toBe("/");
    expect(session!.domain).toBe(new URL(httpsURL!).hostname);
    expect(cookies.find((c) => c.name === "forgetlab_session")).toBeUndefined();

    const jobs = await page.goto("/jobs");
    expect(jobs!.status()).toBe(200);
    expect((await jobs!.allHeaders())["content-encoding"]).toBe("br");
    await hydrated(page);
    await expect(page.locator(".whoami")).toContainText(user);

    // The wasm bundle comes as the server's brotli copy too.
    const wasm = await page.request.get(`/pkg/forgetlab.wasm`, { headers: { "accept-encoding": "br" } });
    expect(wasm.status()).toBe(200);
    expect(wasm.headers()["content-encoding"]).toBe("br");
  });
});
