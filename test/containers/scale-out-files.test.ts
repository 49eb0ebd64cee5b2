import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config.ts';
import { checkHaproxyConfig, haproxyAvailable } from '../support/haproxy.ts';

// No Docker engine or Kubernetes cluster runs on the CI machine: these checks lint the files'
// structure against what the service needs; HAProxy itself checks its configuration when installed.
const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** SHUTDOWN_GRACE_MS as the service reads it when nothing sets it. */
const DEFAULT_SHUTDOWN_GRACE_MS = loadConfig({}).shutdownGraceMs;
/** The settings src/config.ts knows (`NAME: z...` keys of its schema). */
const KNOWN_SETTINGS = new Set(
  [...read('src/config.ts').matchAll(/^ {2}([A-Z][A-Z0-9_]+): /gm)].map((m) => m[1]),
);

/** deploy/haproxy.cfg as sections of directive lines, comments dropped, `.if` blocks flattened. */
function haproxySections(text: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/(^|\s)#.*$/, '').trimEnd();
    if (line.trim() === '' || line.trim().startsWith('.')) continue;
    if (!/^\s/.test(line)) {
      current = [];
      sections.set(line.trim(), current);
    } else current?.push(line.trim().replace(/\s+/g, ' '));
  }
  return sections;
}

/** "30s", "1h", "250ms", "2000" (milliseconds) in milliseconds. */
function haproxyMs(value: string): number {
  const [, amount, unit = 'ms'] = /^(\d+)(ms|s|m|h)?$/.exec(value) ?? [];
  return Number(amount) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[unit as 'ms'];
}

describe('deploy/haproxy.cfg', () => {
  const sections = haproxySections(read('deploy/haproxy.cfg'));
  const defaults = sections.get('defaults') ?? [];
  const backend = sections.get('backend coupon') ?? [];
  const frontend = sections.get('frontend coupon') ?? [];
  const setting = (lines: string[], name: string) => lines.find((line) => line.startsWith(`${name} `));

  it('sends every call to the instances over h2c and checks them over HTTP/1.1 on /readyz', () => {
    const servers = backend.filter((line) => line.startsWith('server '));
    expect(servers.length).toBeGreaterThanOrEqual(3);
    for (const server of servers) {
      // HAProxy 2.6 takes check-proto from a server line only, not from default-server.
      expect(server).toMatch(/ proto h2( |$)/);
      expect(server).toMatch(/ check( |$)/);
      expect(server).toMatch(/ check-proto h1( |$)/);
    }
    expect(backend).toContain('option httpchk GET /readyz');
    expect(backend).toContain('http-check expect status 200');
    expect(frontend.some((line) => line.startsWith('bind '))).toBe(true);
    expect(defaults).toContain('mode http');
  });

  it('adds X-Forwarded-For, as TRUST_PROXY=1 of the compose replicas expects, and retries only what never reached an instance', () => {
    expect(defaults).toContain('option forwardfor');
    expect(setting(defaults, 'retry-on')).toBe('retry-on conn-failure');
    expect(defaults).toContain('option redispatch 1');
  });

  it('has timeouts above what the service takes to answer or drain, and lets silent streams live', () => {
    const timeout = (name: string) => haproxyMs(setting(defaults, `timeout ${name}`)?.split(' ')[2] ?? 'NaN');
    expect(timeout('server')).toBeGreaterThan(DEFAULT_SHUTDOWN_GRACE_MS);
    expect(timeout('client')).toBeGreaterThan(DEFAULT_SHUTDOWN_GRACE_MS);
    // Shorter than the service's own idle timeout (60 s), so the service never closes first.
    expect(timeout('http-keep-alive')).toBeLessThan(loadConfig({}).httpIdleTimeoutMs);
    expect(backend).toContain(
      'http-request set-timeout server 1h if { path_end /Watch /ServerReflectionInfo }',
    );
  });

  it.skipIf(!haproxyAvailable())(
    'is valid for HAProxy with the compose environment, and refused without instances',
    async () => {
      const compose = parse(read('docker-compose.yml')) as {
        services: Record<string, { environment?: Record<string, string> }>;
      };
      const valid = await checkHaproxyConfig(compose.services.haproxy?.environment ?? {});
      expect(valid.valid).toBe(true);
      // The compose names resolve only inside compose: here each server waits for its name
      // (init-addr none), which is the one warning allowed.
      const warnings = valid.output.split('\n').filter((line) => /WARNING|ALERT/.test(line));
      expect(warnings).toHaveLength(3);
      for (const warning of warnings)
        expect(warning).toMatch(/could not resolve address 'app-\d', disabling server/);
      const refused = await checkHaproxyConfig({});
      expect(refused.valid).toBe(false);
      expect(refused.output).toContain('COUPON_APP1 is not set');
    },
  );
});

describe('docker-compose.yml, profile cluster', () => {
  type Service = {
    profiles?: string[];
    image?: string;
    build?: unknown;
    command?: string[];
    ports?: string[];
    volumes?: string[];
    environment?: Record<string, string>;
    depends_on?: Record<string, { condition?: string }>;
    stop_grace_period?: string;
    healthcheck?: { test?: unknown };
  };
  const { services } = parse(read('docker-compose.yml')) as { services: Record<string, Service> };
  const inProfile = Object.entries(services).filter(([, service]) => service.profiles?.includes('cluster'));
  const named = (pattern: RegExp) => inProfile.filter(([name]) => pattern.test(name));
  const redisNodes = named(/^redis-node-\d$/);
  const apps = named(/^app-\d$/);

  it('has 6 Redis Cluster nodes, a one-shot create of 3 masters + 3 replicas, 3 app replicas and HAProxy', () => {
    expect(inProfile.map(([name]) => name).sort()).toEqual(
      [...redisNodes, ...apps]
        .map(([name]) => name)
        .concat('haproxy', 'redis-cluster-create')
        .sort(),
    );
    expect(redisNodes).toHaveLength(6);
    expect(apps).toHaveLength(3);
    for (const [, node] of redisNodes) {
      expect(node.image).toMatch(/^redis:7/);
      expect(node.command?.join(' ')).toContain('--cluster-enabled yes');
      // Else one master's failover makes every node refuse every call (CLUSTERDOWN).
      expect(node.command?.join(' ')).toContain('--cluster-require-full-coverage no');
      expect(node.healthcheck?.test).toBeDefined();
    }
    const create = services['redis-cluster-create'] as Service & { restart?: string };
    expect(create.restart).toBe('no');
    expect(create.depends_on).toEqual(
      Object.fromEntries(redisNodes.map(([name]) => [name, { condition: 'service_healthy' }])),
    );
    const script = JSON.stringify(create);
    expect(script).toContain('--cluster create');
    expect(script).toContain('--cluster-replicas 1');
  });

  it('runs each app replica on the cluster, behind HAProxy only, after the cluster is formed', () => {
    for (const [name, app] of apps) {
      expect(app.build, name).toBeDefined();
      expect(app.ports, `${name} publishes no port: only HAProxy may write X-Forwarded-For`).toBeUndefined();
      const seeds = app.environment?.REDIS_CLUSTER_NODES?.split(',') ?? [];
      expect(seeds.sort()).toEqual(redisNodes.map(([node]) => `${node}:6379`).sort());
      expect(app.environment?.TRUST_PROXY).toBe('1');
      // One deployment per database and Redis keyspace: not the default app's database.
      expect(app.environment?.DATABASE_URL).not.toBe(services.app?.environment?.DATABASE_URL);
      expect(app.depends_on).toEqual({
        mysql: { condition: 'service_healthy' },
        'redis-cluster-create': { condition: 'service_completed_successfully' },
      });
      expect(haproxyMs(app.stop_grace_period?.replace(/s$/, '000') ?? 'NaN')).toBeGreaterThan(
        DEFAULT_SHUTDOWN_GRACE_MS,
      );
      expect(app.healthcheck?.test).toBeDefined();
    }
  });

  it('fronts every replica with the committed deploy/haproxy.cfg', () => {
    const haproxy = services.haproxy as Service;
    expect(haproxy.image).toMatch(/^haproxy:2\.6/);
    expect(haproxy.volumes).toContain('./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro');
    expect(Object.values(haproxy.environment ?? {}).sort()).toEqual(
      apps.map(([name]) => `${name}:8080`).sort(),
    );
    expect(haproxy.depends_on).toEqual(
      Object.fromEntries(apps.map(([name]) => [name, { condition: 'service_healthy' }])),
    );
    // Not the default app's 8080: `--profile cluster` starts the services of no profile too.
    expect(haproxy.ports).toContain('8081:8080');
  });
});

describe('deploy/k8s', () => {
  type Manifest = {
    kind: string;
    metadata: { name: string };
    // biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
    spec: any;
    data?: Record<string, string>;
  };
  const files = readdirSync(new URL('deploy/k8s/', root)).filter((file) => file.endsWith('.yaml'));
  const manifests = files
    .filter((file) => file !== 'kustomization.yaml')
    .flatMap((file) => parseAllDocuments(read(`deploy/k8s/${file}`)).map((doc) => doc.toJS() as Manifest));
  const of = (kind: string) => manifests.find((manifest) => manifest.kind === kind) as Manifest;
  const deployment = of('Deployment');
  const pod = deployment?.spec.template.spec;
  const container = pod?.containers[0];
  const configMap = of('ConfigMap');
  const podLabels = deployment?.spec.template.metadata.labels;

  it('lists every manifest in the kustomization', () => {
    const { resources } = parse(read('deploy/k8s/kustomization.yaml')) as { resources: string[] };
    expect(resources.sort()).toEqual(files.filter((file) => file !== 'kustomization.yaml').sort());
    expect(manifests.map((manifest) => manifest.kind).sort()).toEqual(
      ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Service'].sort(),
    );
  });

  it('probes readiness on /readyz and liveness on /healthz, on the container port', () => {
    const port = container.ports[0];
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: port.name });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: port.name });
    expect(port.containerPort).toBe(
      Number(container.env.find((e: { name: string }) => e.name === 'PORT').value),
    );
  });

  it('pauses before SIGTERM and gives the drain more than SHUTDOWN_GRACE_MS before SIGKILL', () => {
    const pause = container.lifecycle.preStop.exec.command;
    expect(pause[0]).toBe('sleep');
    const graceMs = Number(configMap.data?.SHUTDOWN_GRACE_MS ?? DEFAULT_SHUTDOWN_GRACE_MS);
    expect(graceMs).toBeGreaterThanOrEqual(DEFAULT_SHUTDOWN_GRACE_MS);
    expect(pod.terminationGracePeriodSeconds * 1_000).toBeGreaterThan(Number(pause[1]) * 1_000 + graceMs);
  });

  it('takes secrets from a Secret and valid settings from the ConfigMap', () => {
    for (const name of ['DATABASE_URL', 'ADMIN_TOKEN']) {
      const variable = container.env.find((e: { name: string }) => e.name === name);
      expect(variable.value, `${name} must not be written into the manifest`).toBeUndefined();
      expect(variable.valueFrom.secretKeyRef.key).toBe(name);
      expect(configMap.data?.[name]).toBeUndefined();
    }
    expect(container.envFrom).toEqual([{ configMapRef: { name: configMap.metadata.name } }]);
    for (const key of Object.keys(configMap.data ?? {})) expect(KNOWN_SETTINGS, key).toContain(key);
    // The service accepts the ConfigMap as it is (with placeholder secrets).
    expect(() =>
      loadConfig({
        ...configMap.data,
        DATABASE_URL: 'mysql://coupon:secret@mysql:3306/coupon',
        ADMIN_TOKEN: 'x'.repeat(32),
      }),
    ).not.toThrow();
  });

  it('requests CPU (what the autoscaler measures) and memory', () => {
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.requests.memory).toBeDefined();
    const hpa = of('HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata.name,
    });
    expect(hpa.spec.metrics[0].resource.name).toBe('cpu');
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
  });

  it('selects the pods in the Service and the disruption budget, which keeps most of them up', () => {
    const service = of('Service');
    expect(service.spec.selector).toEqual(podLabels);
    expect(service.spec.ports[0].targetPort).toBe(container.ports[0].name);
    const budget = of('PodDisruptionBudget');
    expect(budget.spec.selector.matchLabels).toEqual(podLabels);
    expect(deployment.spec.selector.matchLabels).toEqual(podLabels);
    expect(budget.spec.maxUnavailable).toBeLessThan(of('HorizontalPodAutoscaler').spec.minReplicas - 1);
  });
});
