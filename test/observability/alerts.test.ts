import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { promtool, promtoolAvailable } from '../support/promtool.ts';

const RULES_DIR = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));

interface Rule {
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const rules: Rule[] = (
  parse(readFileSync(`${RULES_DIR}alerts.yml`, 'utf8')) as { groups: { rules: Rule[] }[] }
).groups.flatMap((group) => group.rules);

describe('deploy/prometheus/alerts.yml', () => {
  it('has the alerts operators asked for, each with a severity and runbook text', () => {
    expect(rules.map((rule) => rule.alert)).toEqual([
      'CouponCircuitBreakerOpen',
      'CouponLeakedSlotsReturned',
      'CouponReconcilerFailing',
      'CouponIssueLatencyHigh',
      'CouponGateDatabaseDisagree',
      'CouponNotReady',
    ]);
    for (const rule of rules) {
      expect(['critical', 'warning']).toContain(rule.labels?.severity);
      for (const annotation of ['summary', 'description', 'runbook']) {
        expect(rule.annotations?.[annotation]?.length, `${rule.alert} ${annotation}`).toBeGreaterThan(20);
      }
    }
  });

  it('raises a breaker alert after 30 s, as the issue asks', () => {
    expect(rules.find((rule) => rule.alert === 'CouponCircuitBreakerOpen')?.for).toBe('30s');
  });

  it.skipIf(!promtoolAvailable())('passes promtool check rules', async () => {
    expect(await promtool(['check', 'rules', 'alerts.yml'], RULES_DIR)).toContain('SUCCESS: 6 rules found');
  });

  it.skipIf(!promtoolAvailable())(
    'passes its unit tests: each alert fires on the series that should raise it and not on the others',
    async () => {
      expect(await promtool(['test', 'rules', 'alerts.test.yml'], RULES_DIR)).toContain('SUCCESS');
    },
  );
});
