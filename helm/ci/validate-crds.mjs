// Validates the custom-resource kinds the chart can render (ServiceMonitor, HTTPRoute) against
// the schemas the @kubernetes-models packages generate from the upstream Go types
// (prometheus-operator's monitoring/v1, Gateway API's v1). The core Kubernetes schemas that
// kubernetes-validate bundles do not cover CRDs, so without this they would go unchecked.
//
// What it checks: types, required fields, enums and patterns. What it does not: unknown fields
// (those schemas allow them); tests/helm.rs checks the CRD documents' keys itself.
//
// Usage: node validate-crds.mjs < documents.json   (a JSON array of rendered documents)
//        node validate-crds.mjs --self-test       (proves a good object passes and a bad one fails)
// The packages are found in $RODENT_CRD_MODELS (default /opt/rodent-ci/crd-models), where
// scripts/ci/helm.sh installs them.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const root = join(process.env.RODENT_CRD_MODELS || "/opt/rodent-ci/crd-models", "node_modules");
const models = {
  "monitoring.coreos.com/v1 ServiceMonitor":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
  "gateway.networking.k8s.io/v1 HTTPRoute":
    "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute.js",
};

async function modelFor(doc) {
  const key = `${doc.apiVersion} ${doc.kind}`;
  const path = models[key];
  if (!path) throw new Error(`no schema for ${key}`);
  const module = await import(pathToFileURL(join(root, path)).href);
  return module[doc.kind];
}

// Returns null when the document is valid, else the validator's message.
async function check(doc) {
  const Model = await modelFor(doc);
  try {
    new Model(doc).validate();
    return null;
  } catch (e) {
    return e.message;
  }
}

async function selfTest() {
  const good = {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "ServiceMonitor",
    metadata: { name: "good" },
    spec: { selector: { matchLabels: { app: "x" } }, endpoints: [{ port: "http", interval: "30s" }] },
  };
  const bad = structuredClone(good);
  bad.spec.endpoints[0].interval = 30;
  const route = {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "HTTPRoute",
    metadata: { name: "bad" },
    spec: { parentRefs: [{ name: "gw" }], rules: [{ backendRefs: [{ name: "svc", port: "80" }] }] },
  };
  const results = [await check(good), await check(bad), await check(route)];
  if (results[0] !== null || results[1] === null || results[2] === null) {
    console.error(`CRD validator self-test failed: ${JSON.stringify(results)}`);
    process.exit(1);
  }
  console.log("CRD validator self-test passed");
}

async function main() {
  if (process.argv.includes("--self-test")) return selfTest();
  const docs = JSON.parse(readFileSync(0, "utf8"));
  let failed = false;
  for (const doc of docs) {
    const name = `${doc.kind}/${doc.metadata?.name}`;
    const error = await check(doc);
    if (error === null) {
      console.log(`ok ${name}`);
    } else {
      console.log(`error ${name}: ${error}`);
      failed = true;
    }
  }
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(`validate-crds: ${e.message}`);
  process.exit(2);
});
