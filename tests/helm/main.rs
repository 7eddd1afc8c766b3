//! The Helm chart in `helm/rodent`, tested with the real tools: `helm lint` and `helm template`,
//! the core Kubernetes schemas of several minor versions (kubernetes-validate, strict: unknown
//! fields fail), and the CRD schemas of ServiceMonitor and HTTPRoute (`helm/ci/validate-crds.mjs`).
//! Rendered manifests are parsed and their facts asserted; the timing is checked against rodent's
//! own configuration rules, so a chart that renders never gives a pod that exits 78.
//!
//! `scripts/ci/helm.sh` installs the tools. Without them each test prints why it skips, except
//! under CI (`CI` set), where a missing tool is a failure.

mod chart;
mod facts;
mod files;
mod refusals;
mod renderings;
mod support;
