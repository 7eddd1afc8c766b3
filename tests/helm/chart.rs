//! The chart's metadata, its documentation, `helm lint` and NOTES.txt.

use std::path::Path;

use serde_json::Value;

use crate::support::{ALL_FEATURES, CHART, helm, tools};

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn chart_version_agrees_with_the_crate() {
    let chart = yaml_file(&format!("{CHART}/Chart.yaml"));
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "rodent");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion must be the crate version (Cargo.toml)"
    );
    let values = yaml_file(&format!("{CHART}/values.yaml"));
    assert_eq!(values["image"]["repository"], "rodent");
    assert_eq!(values["image"]["tag"], "", "the tag defaults to appVersion");
}

/// Value paths of values.yaml, descending into the chart's own maps but not into Kubernetes
/// objects passed through whole.
fn value_paths(prefix: &str, value: &Value, out: &mut Vec<String>) {
    const PASSED_THROUGH: &[&str] = &[
        "podSecurityContext",
        "securityContext",
        "resources",
        "autoscaling.behavior",
    ];
    match value {
        Value::Object(map) if !map.is_empty() && !PASSED_THROUGH.contains(&prefix) => {
            for (key, child) in map {
                let path = match prefix {
                    "" => key.clone(),
                    _ => format!("{prefix}.{key}"),
                };
                value_paths(&path, child, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn every_value_is_in_the_chart_readme_table() {
    let mut paths = Vec::new();
    value_paths("", &yaml_file(&format!("{CHART}/values.yaml")), &mut paths);
    let readme = std::fs::read_to_string(format!("{CHART}/README.md")).expect("chart README");
    let rows: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    let undocumented: Vec<&String> = paths
        .iter()
        .filter(|p| !rows.contains(&p.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "values missing from the README table: {undocumented:?}"
    );
    let stale: Vec<&&str> = rows
        .iter()
        .filter(|r| !paths.contains(&r.to_string()))
        .collect();
    assert!(
        stale.is_empty(),
        "README rows for values that do not exist: {stale:?}"
    );
}

#[test]
fn lint_is_strictly_clean() {
    let Some(tools) = tools() else { return };
    for extra in [&[][..], &["-f", ALL_FEATURES][..]] {
        let args = [&["lint", "--strict", CHART][..], extra].concat();
        let out = helm(tools, &args).unwrap_or_else(|e| panic!("helm {args:?}:\n{e}"));
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(!out.contains("[WARNING]"), "{out}");
        assert!(!out.contains("[ERROR]"), "{out}");
    }
}

#[test]
fn notes_tell_how_to_reach_it() {
    let Some(tools) = tools() else { return };
    // helm renders NOTES.txt only on install, which needs a cluster: render it through `tpl` in
    // a copy of the chart instead.
    let copy = std::env::temp_dir().join(format!("rodent-chart-notes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(Path::new(CHART), &copy);
    std::fs::copy(copy.join("templates/NOTES.txt"), copy.join("notes.txt")).expect("copies");
    std::fs::write(
        copy.join("templates/notes.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n\
         data: {notes: {{ tpl (.Files.Get \"notes.txt\") . | quote }}}\n",
    )
    .expect("writes the template");
    let chart = copy.to_str().expect("a UTF-8 path");
    let notes = |extra: &[&str]| {
        let base = [
            "template",
            "rodent",
            chart,
            "-n",
            "web",
            "--show-only",
            "templates/notes.yaml",
        ];
        let yaml = helm(tools, &[&base[..], extra].concat()).unwrap_or_else(|e| panic!("{e}"));
        let doc: Value = serde_norway::from_str(&yaml).expect("YAML");
        doc["data"]["notes"].as_str().expect("notes").to_string()
    };
    let default = notes(&[]);
    for line in [
        "kubectl port-forward -n web service/rodent 8080:80",
        "http://rodent.web.svc:80/",
        "helm test rodent -n web",
        "terminationGracePeriodSeconds: 30.",
    ] {
        assert!(
            default.contains(line),
            "NOTES should say {line:?}:\n{default}"
        );
    }
    let management = notes(&["--set", "managementPort=9090"]);
    let line = "on the management port 9090 (service rodent-management, inside the cluster only)";
    assert!(
        management.contains(line),
        "NOTES should say {line:?}:\n{management}"
    );
    let all = notes(&["-f", ALL_FEATURES]);
    for line in ["https://rodent.example.com/", "(5s preStop sleep + 45s)"] {
        assert!(all.contains(line), "NOTES should say {line:?}:\n{all}");
    }
    std::fs::remove_dir_all(&copy).expect("removes the copy");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creates the directory");
    for entry in std::fs::read_dir(from).expect("reads the chart") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copies a file");
        }
    }
}
