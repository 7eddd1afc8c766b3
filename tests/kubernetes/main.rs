//! rodent on a real Kubernetes cluster of three nodes: the one `scripts/kube up` builds from the
//! Kubernetes sources and runs in network namespaces of its own (see the README). The chart is
//! installed with helm, the probes are run by real kubelets, endpoints follow real
//! EndpointSlices, and the load goes from a client node through its kube-proxy's iptables rules
//! to a Service, and from there to pods on the other nodes.
//!
//! Without a cluster every test prints SKIPPED and passes; under CI (`CI` set) that is a
//! failure: `.ci/run` builds and starts the cluster first (`scripts/ci/kube.sh`). So is a cluster
//! of fewer nodes than a test needs. The images are built from the binaries under test, so run
//! these with `scripts/test`, which builds rodent statically (and the baseline example with it:
//! run `scripts/test --no-run` once before `scripts/test --test kubernetes`).
//!
//! Run with `--nocapture` to see the figures (every scenario under load prints a `figure:` line);
//! the rollouts, the drain and the slowed rollout are also drawn into
//! `target/<target>/figures/kubernetes-*.svg`.

mod chart;
mod cluster;
mod deletion;
mod drain;
mod faults;
mod files;
mod grpc;
mod hardened;
mod images;
mod nodes;
mod probes;
mod propagation;
mod release;
mod rollouts;
mod scaledown;
mod scenario;
mod spread;
mod watch;

use rollouts::{CYCLES, check_the_load_ran, rolling_restarts};
use scenario::{SLOW_PROXY, Server};

/// The cluster, or a return that skips the test (outside CI), and the one-at-a-time guard;
/// `cluster!(n)` also needs `n` nodes.
macro_rules! cluster {
    () => {
        cluster!(1)
    };
    ($nodes:expr) => {{
        let Some(cluster) = cluster::require() else {
            return;
        };
        if !cluster.has_nodes($nodes) {
            return;
        }
        eprintln!(
            "cluster: Kubernetes {}, {} nodes (scripts/kube up took {} s)",
            cluster.version,
            cluster.nodes.len(),
            cluster.start_seconds
        );
        (cluster, cluster::one_at_a_time())
    }};
}

#[test]
fn helm_install_waits_and_helm_test_passes_in_a_restricted_namespace() {
    let (cluster, _one) = cluster!();
    chart::install_and_helm_test(cluster);
}

#[test]
fn a_read_only_pod_with_no_volume_under_any_uid_starts_and_stops_cleanly() {
    let (cluster, _one) = cluster!();
    hardened::read_only_pod_with_no_volume_starts_and_stops_cleanly(cluster);
}

#[test]
fn the_all_features_values_pass_a_server_side_dry_run() {
    let (cluster, _one) = cluster!();
    chart::all_features_pass_a_server_side_dry_run(cluster);
}

#[test]
fn after_deletion_the_pod_turns_unready_and_its_endpoint_terminating_in_time() {
    let (cluster, _one) = cluster!();
    probes::readiness_after_deletion(cluster);
}

#[test]
fn liveness_holds_through_a_drain_and_the_restart_is_the_exits() {
    let (cluster, _one) = cluster!();
    probes::liveness_through_a_drain_signalled_on_the_node(cluster);
}

#[test]
fn the_admin_api_takes_a_pod_out_of_the_endpoints_and_back() {
    let (cluster, _one) = cluster!();
    probes::admin_api_takes_a_pod_out_of_rotation(cluster);
}

#[test]
fn a_deleted_pod_exits_0_inside_the_grace_period() {
    let (cluster, _one) = cluster!();
    let deletion = deletion::delete_pod(cluster, 0);
    assert!(deletion.to_exit < deletion.grace);
}

#[test]
fn a_deleted_pod_with_a_pre_stop_sleep_exits_0_inside_the_grace_period() {
    let (cluster, _one) = cluster!();
    let deletion = deletion::delete_pod(cluster, 3);
    assert!(deletion.to_exit < deletion.grace);
    assert!(deletion.to_sigterm.is_none_or(|t| t < deletion.to_exit));
}

#[test]
fn rodent_loses_no_request_across_three_rollout_restarts_on_three_nodes() {
    let (cluster, _one) = cluster!(3);
    let rollouts = rolling_restarts(cluster, Server::Rodent, CYCLES, None);
    plot_rollouts(&rollouts.run);
    check_the_load_ran(&rollouts);
    rollouts.run.check();
}

#[test]
fn the_baseline_loses_requests_in_the_same_rollouts() {
    let (cluster, _one) = cluster!(3);
    let rollouts = rolling_restarts(cluster, Server::Baseline, CYCLES, None);
    plot_rollouts(&rollouts.run);
    check_the_load_ran(&rollouts);
    rollouts.run.check();
}

fn plot_rollouts(run: &scenario::Run) {
    run.plot(
        "kubernetes-rollouts",
        "Three kubectl rollout restarts across three nodes, requests per second from the client \
         node",
        &["rodent", "baseline"],
    );
}

#[test]
fn a_node_drain_with_the_disruption_budget_finishes_and_rodent_loses_nothing() {
    let (cluster, _one) = cluster!(3);
    drained(cluster, Server::Rodent);
}

#[test]
fn the_baseline_loses_requests_in_the_same_drain() {
    let (cluster, _one) = cluster!(3);
    drained(cluster, Server::Baseline);
}

fn drained(cluster: &cluster::Cluster, server: Server) {
    let run = drain::drain_a_node(cluster, server);
    run.plot(
        drain::FIGURE,
        "kubectl drain of the node holding both pods, requests per second from the client node",
        &["rodent", "baseline"],
    );
    run.check();
}

#[test]
fn with_the_client_nodes_kube_proxy_late_rodent_loses_no_request_in_a_rollout() {
    let (cluster, _one) = cluster!(3);
    slowed_rollouts(cluster, Server::Rodent);
}

#[test]
fn with_the_client_nodes_kube_proxy_late_rodent_without_a_drain_delay_loses_requests() {
    let (cluster, _one) = cluster!(3);
    slowed_rollouts(cluster, Server::RodentNoDrainDelay);
}

#[test]
fn with_the_client_nodes_kube_proxy_late_the_baseline_loses_requests() {
    let (cluster, _one) = cluster!(3);
    slowed_rollouts(cluster, Server::Baseline);
}

fn slowed_rollouts(cluster: &cluster::Cluster, server: Server) {
    let rollouts = rolling_restarts(cluster, server, 1, Some(SLOW_PROXY));
    rollouts.run.plot(
        "kubernetes-slowed-rollout",
        "A rollout restart, the client node's kube-proxy 2.5 s late, requests per second",
        &["rodent", "rodent-no-delay", "baseline"],
    );
    check_the_load_ran(&rollouts);
    rollouts.run.check();
}

#[test]
fn rodent_loses_no_request_in_a_scale_down_from_four_replicas_to_one() {
    let (cluster, _one) = cluster!(3);
    scaled_down(cluster, Server::Rodent);
}

#[test]
fn the_baseline_loses_requests_in_the_same_scale_down() {
    let (cluster, _one) = cluster!(3);
    scaled_down(cluster, Server::Baseline);
}

fn scaled_down(cluster: &cluster::Cluster, server: Server) {
    let run = scaledown::scale_down(cluster, server);
    run.plot(
        scaledown::FIGURE,
        "kubectl scale from 4 replicas to 1, requests per second from the client node",
        &["rodent", "baseline"],
    );
    run.check();
}

#[test]
fn with_the_charts_spread_constraint_three_replicas_land_on_three_nodes() {
    let (cluster, _one) = cluster!(3);
    spread::three_replicas_on_three_nodes(cluster);
}

#[test]
fn grpc_readiness_probes_take_a_draining_pod_out_of_the_endpoints() {
    let (cluster, _one) = cluster!();
    grpc::grpc_readiness_takes_a_draining_pod_out(cluster);
}

#[test]
fn rodent_loses_no_grpc_call_across_rollouts_and_a_scale_down() {
    let (cluster, _one) = cluster!(3);
    let run = grpc::grpc_rollouts_and_scale_down(cluster, Server::Rodent);
    eprintln!("{}", run.summary(Server::Rodent));
    run.check_the_load_ran(Server::Rodent);
    assert_eq!(
        run.load.lost(),
        0,
        "rodent lost gRPC calls:\n{}",
        run.summary(Server::Rodent)
    );
}

#[test]
fn the_grpc_baseline_loses_calls_in_the_same_rollouts_and_scale_down() {
    let (cluster, _one) = cluster!(3);
    let run = grpc::grpc_rollouts_and_scale_down(cluster, Server::Baseline);
    eprintln!("{}", run.summary(Server::Baseline));
    run.check_the_load_ran(Server::Baseline);
    assert!(
        run.load.lost() > 0,
        "the gRPC baseline lost nothing, so the scenario cannot tell a drain from none:\n{}",
        run.summary(Server::Baseline)
    );
}

#[test]
fn faults_unready_makes_helm_install_wait_fail() {
    let (cluster, _one) = cluster!();
    faults::unready_fails_helm_install_wait(cluster);
}

#[test]
fn faults_test_fail_and_test_timeout_make_helm_test_fail() {
    let (cluster, _one) = cluster!();
    faults::test_faults_fail_helm_test(cluster);
}

#[test]
fn with_an_error_rate_the_probes_stay_green_and_the_pods_in_the_endpoints() {
    let (cluster, _one) = cluster!();
    faults::error_rate_keeps_probes_green_and_pods_in_the_endpoints(cluster);
}

#[test]
fn a_configmap_edit_is_applied_by_the_running_pods_without_a_restart() {
    let (cluster, _one) = cluster!();
    files::a_configmap_edit_is_applied_without_a_restart(cluster);
}

#[test]
fn a_tls_secret_rotation_under_keep_alive_https_load_drops_nothing() {
    let (cluster, _one) = cluster!();
    files::a_tls_secret_rotation_under_keep_alive_https_load_drops_nothing(cluster);
}
