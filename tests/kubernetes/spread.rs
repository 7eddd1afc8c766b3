//! The chart's `topologySpreadConstraints` (none by default), set through its values: three
//! replicas land on three nodes. The scheduler's own default spreading is only a preference and
//! may place them so too, so the test then shows that the constraint itself is in force: with
//! two nodes cordoned, a scale to five places one more pod on the third node and leaves the
//! fifth Pending, unschedulable for the constraint, where a preference would have placed it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{Cluster, Namespace};
use crate::nodes::{Cordon, node_of, spread};
use crate::release::ROLLOUT_TIMEOUT;
use crate::scenario::{Server, deploy, one_per_node};
use crate::watch::summary;

pub fn three_replicas_on_three_nodes(cluster: &Cluster) {
    let namespace = Namespace::restricted(cluster, "spread");
    let mut extra = one_per_node();
    extra["replicaCount"] = json!(3);
    let release = deploy(cluster, &namespace, Server::Rodent, extra);
    let pods = release.ready_pods();
    let nodes: Vec<&str> = pods.iter().map(node_of).collect();
    assert_eq!(pods.len(), 3, "three replicas");
    assert_eq!(spread(&pods), 3, "three replicas on three nodes: {nodes:?}");
    eprintln!("three replicas on {nodes:?}");

    let deployment = namespace.json(&["get", &release.deployment()]);
    let constraint = &deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
    assert_eq!(
        constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        json!(release.name),
        "the chart fills in the label selector: {constraint}"
    );

    let last = cluster.nodes.last().expect("a node").name.clone();
    let others: Vec<&str> = cluster
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| *n != last)
        .collect();
    let _cordoned = Cordon::new(cluster, &others);
    namespace.run(&["scale", &release.deployment(), "--replicas=5"]);
    let deadline = Instant::now() + ROLLOUT_TIMEOUT;
    let pending = loop {
        let pods = release.pods();
        let ready = release.ready_pods();
        let unschedulable: Vec<&Value> = pods.iter().filter(|p| unschedulable(p)).collect();
        if pods.len() == 5 && ready.len() == 4 && unschedulable.len() == 1 {
            break unschedulable[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "not four pods Ready and one unschedulable within {ROLLOUT_TIMEOUT:?}: {}",
            pods.iter().map(summary).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let ready = release.ready_pods();
    assert_eq!(
        ready.iter().filter(|p| node_of(p) == last).count(),
        2,
        "one more pod on {last}, and no more: {:?}",
        ready.iter().map(node_of).collect::<Vec<_>>()
    );
    let message = condition(&pending, "PodScheduled")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("topology spread"),
        "the fifth pod is Pending for the spread constraint: {message}"
    );
    eprintln!("the fifth pod is Pending: {message}");
}

fn condition<'a>(pod: &'a Value, kind: &str) -> &'a Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

fn unschedulable(pod: &Value) -> bool {
    let scheduled = condition(pod, "PodScheduled");
    scheduled["status"] == "False" && scheduled["reason"] == "Unschedulable"
}
