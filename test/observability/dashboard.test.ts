import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import { promtool, promtoolAvailable } from '../support/promtool.ts';
import { isolatedConfig, startApp } from '../support/services.ts';

/**
 * The parts of Grafana's dashboard JSON model (schema version 38, Grafana 10.0; later versions
 * migrate it on load) that decide whether the file imports and every panel finds its data: what
 * Grafana's import refuses or shows as a broken panel when it is missing or mistyped.
 */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a template string
const datasourceRef = z.object({ type: z.literal('prometheus'), uid: z.literal('${datasource}') }).strict();
const gridPos = z
  .object({
    h: z.number().int().positive(),
    w: z.number().int().min(1).max(24),
    x: z.number().int().min(0).max(23),
    y: z.number().int().min(0),
  })
  .strict()
  .refine((pos) => pos.x + pos.w <= 24, 'a panel must fit in the 24 columns');
const target = z.object({
  refId: z.string().regex(/^[A-Z]$/),
  expr: z.string().min(1),
  datasource: datasourceRef,
  legendFormat: z.string().optional(),
  format: z.enum(['time_series', 'table', 'heatmap']).optional(),
  instant: z.boolean().optional(),
  range: z.boolean().optional(),
  editorMode: z.enum(['code', 'builder']).optional(),
});
const panel = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('row'),
    id: z.number().int().positive(),
    title: z.string().min(1),
    collapsed: z.boolean(),
    gridPos,
    panels: z.array(z.unknown()),
  }),
  z.object({
    type: z.enum(['timeseries', 'state-timeline', 'table', 'stat']),
    id: z.number().int().positive(),
    title: z.string().min(1),
    description: z.string().min(1),
    datasource: datasourceRef,
    gridPos,
    targets: z.array(target).min(1),
    fieldConfig: z.object({ defaults: z.record(z.string(), z.unknown()), overrides: z.array(z.unknown()) }),
    options: z.record(z.string(), z.unknown()),
    transformations: z.array(z.object({ id: z.string(), options: z.unknown() })).optional(),
  }),
]);
const variable = z.discriminatedUnion('type', [
  z.object({ type: z.literal('datasource'), name: z.literal('datasource'), query: z.literal('prometheus') }),
  z.object({
    type: z.literal('query'),
    name: z.string().regex(/^\w+$/),
    datasource: datasourceRef,
    query: z.object({ query: z.string().min(1), refId: z.string() }),
    refresh: z.union([z.literal(1), z.literal(2)]),
  }),
]);
const dashboardModel = z.object({
  uid: z.string().regex(/^[\w-]{1,40}$/),
  title: z.string().min(1),
  schemaVersion: z.number().int().min(38),
  version: z.number().int(),
  editable: z.boolean(),
  graphTooltip: z.union([z.literal(0), z.literal(1), z.literal(2)]),
  time: z.object({ from: z.string(), to: z.string() }),
  refresh: z.string(),
  timezone: z.string(),
  tags: z.array(z.string()),
  annotations: z.object({ list: z.array(z.unknown()) }),
  templating: z.object({ list: z.array(variable) }),
  panels: z.array(panel).min(1),
});

type Dashboard = z.infer<typeof dashboardModel>;
const dashboard: Dashboard = dashboardModel.parse(
  JSON.parse(readFileSync(new URL('../../deploy/grafana/coupon-service.json', import.meta.url), 'utf8')),
);
const queries = dashboard.panels.flatMap((p) =>
  p.type === 'row' ? [] : p.targets.map((t) => ({ panel: p.title, refId: t.refId, expr: t.expr })),
);
const alertExprs = (
  parse(readFileSync(new URL('../../deploy/prometheus/alerts.yml', import.meta.url), 'utf8')) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  }
).groups.flatMap((group) => group.rules.map((rule) => ({ panel: rule.alert, expr: rule.expr })));

/** A query as Prometheus gets it from Grafana: its variables replaced by values. */
function asSent(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*');
}

/** The metric names a query reads (histograms by their base name). */
function metricsRead(expr: string): string[] {
  const names = expr.match(/\b(?:coupon|process|nodejs)_[a-z_]+\b/g) ?? [];
  return names.map((name) => name.replace(/_(bucket|sum|count)$/, ''));
}

let env: Awaited<ReturnType<typeof startApp>>;
beforeAll(async () => {
  env = await startApp(isolatedConfig());
});
afterAll(async () => {
  await env?.stop();
});

describe('deploy/grafana/coupon-service.json', () => {
  it('is a dashboard model Grafana 10+ imports: schema version 38+, the datasource a variable', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(38);
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'instance']);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('lays panels out without overlapping', () => {
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
  });

  it('has the panels operators asked for', () => {
    const titles = dashboard.panels.map((p) => p.title);
    for (const wanted of [
      'IssueCoupon outcomes per second',
      'RPC latency p50 / p99 by method',
      'Remaining per open campaign',
      'Issued per open campaign',
      'Claims settled by the reconciler',
      'Circuit breakers',
      'Event-loop delay',
      'DB batch size (group commit)',
      'DB batch latency',
      'Process memory',
    ]) {
      expect(titles).toContain(wanted);
    }
    const outcomes = dashboard.panels.find((p) => p.title === 'IssueCoupon outcomes per second');
    expect(outcomes && outcomes.type !== 'row' && outcomes.fieldConfig.defaults.custom).toMatchObject({
      stacking: { mode: 'normal' },
    });
  });

  it('reads only metrics the service exports, and so do the alerts', async () => {
    const exported = new Set(
      [...(await (await fetch(`${env.baseUrl}/metrics`)).text()).matchAll(/^# TYPE (\S+) /gm)].map(
        (match) => match[1],
      ),
    );
    for (const query of [...queries, ...alertExprs]) {
      const read = metricsRead(query.expr);
      expect(read.length, `${query.panel}: ${query.expr}`).toBeGreaterThan(0);
      for (const name of read) expect(exported, `${query.panel} reads ${name}`).toContain(name);
    }
  });

  it.skipIf(!promtoolAvailable())('sends Prometheus queries it parses (promtool)', async () => {
    // promtool has no query linter of its own: each query becomes a recording rule it checks.
    const dir = mkdtempSync(path.join(tmpdir(), 'coupon-dashboard-'));
    try {
      const rules = queries.map(
        (query, i) =>
          `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(asSent(query.expr))}`,
      );
      writeFileSync(
        path.join(dir, 'queries.yml'),
        `groups:\n  - name: dashboard\n    rules:\n${rules.join('\n')}\n`,
      );
      expect(await promtool(['check', 'rules', 'queries.yml'], dir)).toContain(
        `SUCCESS: ${queries.length} rules found`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
