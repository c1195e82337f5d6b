//! Render cost: Ship's render of one environment (the renderer's run, then parsing, namespace
//! defaulting and validation) against the renderer run by hand on the same tree, in the same
//! run, for a Helm chart of 200 objects and a kustomize overlay of 200 objects; and a render
//! served from the cache against a render made.
//!
//! `cargo bench -p ship-render --bench render` (ROUNDS from the environment; helm from
//! SHIP_HELM or PATH, kustomize from `kustomize` or `kubectl` on PATH). Prints the median and
//! p90 of each and the ratios (Ship / by hand: what Ship adds over the renderer itself).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ship_render::cache::{RenderCache, RenderKey};
use ship_render::tools::Processes;
use ship_render::{Limits, render_environment};
use ship_testkit::bench::{env_or, percentile};

const OBJECTS: usize = 200;

fn write(root: &Path, path: &str, content: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, content).unwrap();
}

/// A chart rendering OBJECTS objects (half Deployments, half their ConfigMaps), and a
/// kustomize base of OBJECTS files with an overlay (prefix, labels, a patch on every
/// Deployment), declared as environments `chart` and `overlay`.
fn build_tree(root: &Path) {
    write(
        root,
        "ship.yaml",
        "environments:\n  chart:\n    namespace: bench-chart\n    helm: {chart: charts/big, values: {replicas: 2}}\n  \
         overlay:\n    namespace: bench-overlay\n    path: deploy/overlay\npromotion: {enabled: false}\n",
    );
    write(
        root,
        "charts/big/Chart.yaml",
        "apiVersion: v2\nname: big\nversion: 1.0.0\n",
    );
    write(
        root,
        "charts/big/values.yaml",
        &format!(
            "count: {}\nreplicas: 1\nimage: registry.example.com/web:1.4.2\n",
            OBJECTS / 2
        ),
    );
    write(
        root,
        "charts/big/templates/apps.yaml",
        "{{- range $i := until (int .Values.count) }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  \
         name: {{ $.Release.Name }}-app-{{ $i }}\n  labels: {app: app-{{ $i }}}\ndata:\n  index: {{ $i | quote }}\n\
         ---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ $.Release.Name }}-app-{{ $i }}\nspec:\n  \
         replicas: {{ $.Values.replicas }}\n  selector: {matchLabels: {app: app-{{ $i }}}}\n  template:\n    \
         metadata: {labels: {app: app-{{ $i }}}}\n    spec:\n      containers:\n      - name: app\n        \
         image: {{ $.Values.image }}\n        envFrom: [{configMapRef: {name: {{ $.Release.Name }}-app-{{ $i }}}}]\n\
         {{- end }}\n",
    );
    let mut resources = Vec::new();
    for i in 0..OBJECTS / 2 {
        write(
            root,
            &format!("deploy/base/app-{i}.yaml"),
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app-{i}}}\ndata: {{index: \"{i}\"}}\n---\n\
                 apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{i}}}\nspec:\n  replicas: 1\n  \
                 selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i}}}}}\n    \
                 spec:\n      containers:\n      - name: app\n        image: registry.example.com/web:1.4.2\n        \
                 envFrom: [{{configMapRef: {{name: app-{i}}}}}]\n"
            ),
        );
        resources.push(format!("app-{i}.yaml"));
    }
    write(
        root,
        "deploy/base/kustomization.yaml",
        &format!("resources: [{}]\n", resources.join(", ")),
    );
    write(
        root,
        "deploy/overlay/kustomization.yaml",
        "resources: [../base]\nnamePrefix: prod-\nlabels:\n- pairs: {tier: web}\npatches:\n\
         - target: {kind: Deployment}\n  patch: |-\n    - {op: replace, path: /spec/replicas, value: 3}\n",
    );
}

fn time(rounds: usize, mut run: impl FnMut()) -> Vec<Duration> {
    run(); // warm the page cache and the binaries
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed()
        })
        .collect()
}

fn by_hand(mut command: Command) {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.len() > 10_000);
}

fn report(name: &str, samples: &mut [Duration]) -> f64 {
    let median = percentile(samples, 0.5);
    let p90 = percentile(samples, 0.9);
    eprintln!(
        "{name:<44} median {:>8.2} ms  p90 {:>8.2} ms",
        median.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3
    );
    median.as_secs_f64()
}

fn main() {
    let rounds = env_or("ROUNDS", 15);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build_tree(root);
    let helm = ship_render::helm::helm_binary().expect("helm: set SHIP_HELM (tests/tools/helm.sh)");
    let limits = Limits::default();
    eprintln!("{} ({rounds} rounds)", ship_render::cache::renderer_versions());

    let rendered = render_environment(&Processes, root, "chart", &limits).unwrap();
    assert_eq!(rendered.manifests.len(), OBJECTS);
    let overlay = render_environment(&Processes, root, "overlay", &limits).unwrap();
    assert_eq!(overlay.manifests.len(), OBJECTS);
    let deployment = overlay
        .manifests
        .iter()
        .find(|m| m.object["kind"] == "Deployment")
        .unwrap();
    assert_eq!(deployment.object["spec"]["replicas"], 3, "the overlay's patch");

    let mut helm_by_hand = time(rounds, || {
        let mut command = Command::new(&helm);
        command
            .args(["template", "chart"])
            .arg(root.join("charts/big"))
            .args([
                "--namespace",
                "bench-chart",
                "--include-crds",
                "--set",
                "replicas=2",
            ]);
        by_hand(command);
    });
    let mut helm_by_ship = time(rounds, || {
        let r = render_environment(&Processes, root, "chart", &limits).unwrap();
        assert_eq!(r.manifests.len(), OBJECTS);
    });
    let kubectl_kustomize = || {
        let mut command = if Command::new("kustomize").arg("version").output().is_ok() {
            let mut c = Command::new("kustomize");
            c.arg("build");
            c
        } else {
            let mut c = Command::new("kubectl");
            c.arg("kustomize");
            c
        };
        command.arg(root.join("deploy/overlay"));
        command
    };
    let mut kustomize_by_hand = time(rounds, || by_hand(kubectl_kustomize()));
    let mut kustomize_by_ship = time(rounds, || {
        let r = render_environment(&Processes, root, "overlay", &limits).unwrap();
        assert_eq!(r.manifests.len(), OBJECTS);
    });
    let mut cache = RenderCache::new(8);
    let key = RenderKey::new("0123456789abcdef0123456789abcdef01234567", "chart");
    cache.insert(key.clone(), Arc::new(rendered));
    let mut cached = time(rounds.max(1000), || {
        assert!(cache.get(&key).is_some());
    });

    eprintln!();
    let helm_hand = report("helm template (by hand)", &mut helm_by_hand);
    let helm_ship = report("Ship render, chart (helm + parse + validate)", &mut helm_by_ship);
    let kustomize_hand = report("kustomize build (by hand)", &mut kustomize_by_hand);
    let kustomize_ship = report("Ship render, overlay", &mut kustomize_by_ship);
    let hit = report("Ship render served from the cache", &mut cached);
    eprintln!();
    eprintln!(
        "ratio chart   Ship / helm template      {:.2}",
        helm_ship / helm_hand
    );
    eprintln!(
        "ratio overlay Ship / kustomize build    {:.2}",
        kustomize_ship / kustomize_hand
    );
    eprintln!("ratio cached / rendered (chart)         {:.6}", hit / helm_ship);
}
