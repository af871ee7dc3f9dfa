// Opens a pack's workflow templates in ComfyUI's graph editor the way a user does (template browser, the
// pack's entry under Custom Nodes, a click on the card) in headless Chromium through playwright-core, and
// writes what the editor made of each one to <outDir>/results.json, with a screenshot per workflow.
// Usage: node open_workflows.mjs <config.json>; config: {url, chromium, pack, workflows: [names], outDir, timeoutMs}
// Judging the results is left to tests/e2e/test_editor.py.
import fs from "node:fs/promises";
import path from "node:path";
import { chromium } from "playwright-core";

const cfg = JSON.parse(await fs.readFile(process.argv[2], "utf8"));
const timeout = cfg.timeoutMs ?? 60000;
const serverHost = new URL(cfg.url).host;

// A fresh user would get the template browser as a welcome dialog over the canvas. Every other setting stays
// at the editor's default: the low-quality zoom threshold (LiteGraph.Canvas.MinFontSizeForLOD) included, so the
// zoom a workflow opens at is the one a user gets, and a workflow that opens as grey boxes shows as such.
const settings = await fetch(`${cfg.url}/api/settings`, {
  method: "POST",
  body: JSON.stringify({ "Comfy.TutorialCompleted": true }),
});
if (!settings.ok) throw new Error(`POST /api/settings: HTTP ${settings.status}`);

// Without the background-networking flags Chromium keeps dialling Google's hosts on a closed network.
const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  timeout,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const results = { startup: { console: [] }, workflows: {} };
try {
  const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  page.setDefaultTimeout(timeout);
  // The frontend asks outside hosts for news and registry data: refused at once, so nothing waits on them.
  await page.route("**/*", (route) =>
    new URL(route.request().url()).host === serverHost ? route.continue() : route.abort("blockedbyclient"));
  let log = results.startup.console;
  page.on("console", (msg) => log.push({ type: msg.type(), text: msg.text(), url: msg.location().url ?? "" }));
  page.on("pageerror", (err) => log.push({ type: "pageerror", text: String(err.stack || err), url: "" }));

  await page.goto(cfg.url, { waitUntil: "load" });
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph?.registered_node_types &&
                                   document.querySelector("canvas#graph-canvas"));
  await page.evaluate(() => {
    // afterConfigureGraph runs at the end of every load with its missing node types, dialog or not
    window.__infuseLoads = [];
    window.app.registerExtension({
      name: "infuse.e2e.loads",
      afterConfigureGraph(missing) { window.__infuseLoads.push(missing.map((m) => (typeof m === "string" ? m : m.type))); },
    });
  });
  results.startup.dialogs = await page.locator(".p-dialog:visible").allInnerTexts();
  results.templates = await page.evaluate(() => window.app.api.getWorkflowTemplates());

  for (const name of cfg.workflows) {
    const entry = { console: [] };
    results.workflows[name] = entry;
    log = entry.console;
    try {
      await closeDialogs(page);
      entry.missing = await openFromTemplateBrowser(page, cfg.pack, name);
      await page.waitForTimeout(500);   // a missing-node dialog or a toast opens a little after the load resolves
      Object.assign(entry, await page.evaluate(describeGraph));
      entry.dialogs = await page.locator(".p-dialog:visible").allInnerTexts();
      entry.toasts = await page.locator(".p-toast-message:visible").allInnerTexts();
      entry.screenshot = path.join(cfg.outDir, `${name}.png`);
      await page.screenshot({ path: entry.screenshot });
    } catch (err) {
      entry.error = String(err.stack || err);
    }
  }
  // what the user's settings hold after the run (the editor's defaults apply to everything not in it)
  results.settings = await (await fetch(`${cfg.url}/api/settings`)).json();
} finally {
  await fs.writeFile(path.join(cfg.outDir, "results.json"), JSON.stringify(results, null, 1));
  await browser.close();
}

async function closeDialogs(page) {
  for (let i = 0; i < 3 && (await page.locator(".p-dialog:visible").count()); i++) {
    await page.keyboard.press("Escape");
    await page.waitForTimeout(200);
  }
}

// Template browser -> Custom Nodes -> the pack -> the workflow's card; returns the load's missing node types.
async function openFromTemplateBrowser(page, pack, name) {
  const loadsBefore = await page.evaluate(() => window.__infuseLoads.length);
  await page.evaluate(() => window.app.extensionManager.command.execute("Comfy.BrowseTemplates"));
  const dialog = page.locator(".p-dialog:visible");
  await dialog.getByText(pack, { exact: true }).first().click();
  await dialog.getByText(name, { exact: true }).first().click();
  await page.waitForFunction((n) => window.__infuseLoads.length > n, loadsBefore);
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  return page.evaluate(() => window.__infuseLoads.at(-1));
}

// Runs in the page: the graph as the editor holds it.
function describeGraph() {
  // what the editor draws over the canvas near its edges: the minimap and the zoom buttons
  function overlayRects() {
    return [...document.querySelectorAll(".minimap-main-container, .p-buttongroup-vertical")]
      .map((el) => ({ what: String(el.className).split(" ")[0], rect: el.getBoundingClientRect() }))
      .filter(({ rect }) => rect.width > 0 && rect.height > 0)
      .map(({ what, rect }) => ({ what, rect: [rect.left, rect.top, rect.width, rect.height] }));
  }
  const { app, LiteGraph } = window;
  const plain = (v) => (v === undefined || typeof v === "function" ? null : v);
  const canvas = app.canvas;
  const rect = canvas.canvas.getBoundingClientRect();
  return {
    activeWorkflow: app.extensionManager.workflow.activeWorkflow?.filename ?? null,
    // the view the load left: zoom, whether the canvas draws nodes as blank boxes at it, and where on the page
    // (CSS pixels) the canvas and each node are
    view: {
      scale: canvas.ds.scale,
      offset: Array.from(canvas.ds.offset),
      lowQuality: canvas.low_quality,
      minFontSizeForLOD: canvas.min_font_size_for_lod,
      lowQualityBelow: canvas._lowQualityZoomThreshold ?? null,
      devicePixelRatio: window.devicePixelRatio,
      canvasRect: [rect.left, rect.top, rect.width, rect.height],
      overlays: overlayRects(),
    },
    links: app.graph.serialize().links,
    nodes: app.graph.nodes.map((n) => ({
      id: n.id,
      type: n.type,
      // title bar included; page pixels
      screenRect: (() => {
        const [x, y, w, h] = n.boundingRect;
        const [sx, sy] = canvas.ds.convertOffsetToCanvas([x, y]);
        return [rect.left + sx, rect.top + sy, w * canvas.ds.scale, h * canvas.ds.scale];
      })(),
      pos: Array.from(n.pos),
      size: Array.from(n.size),
      registered: n.type in LiteGraph.registered_node_types,
      hasErrors: !!n.has_errors,
      inputs: (n.inputs ?? []).map((i) => ({ name: i.name, type: i.type, link: i.link, widget: i.widget?.name ?? null })),
      outputs: (n.outputs ?? []).map((o) => ({ name: o.name, type: o.type })),
      widgets: (n.widgets ?? []).map((w) => ({
        name: w.name, type: w.type, value: plain(w.value), serialize: w.serialize !== false,
        min: plain(w.options?.min), max: plain(w.options?.max),
        values: Array.isArray(w.options?.values) ? w.options.values : null,
      })),
      widgetsValues: n.serialize().widgets_values ?? [],
    })),
  };
}

