//! The test bed's real node keeps its traffic on this machine: what pods send goes to pods,
//! Services, the node or loopback, and nothing dials the cloud metadata address. Read from the
//! kernel's connection tracking table (`conntrack -L`), after pods have used the `kubernetes`
//! Service, a ClusterIP and the service proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use ship_testkit::cluster::{TestCluster, eventually};

/// One tracked connection: the original direction's source and destination, and the reply's.
#[derive(Debug)]
struct Tracked {
    line: String,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    reply_src: Option<Ipv4Addr>,
}

fn tracked() -> Vec<Tracked> {
    let out = Command::new("conntrack")
        .args(["-L", "-f", "ipv4"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "conntrack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let field = |key: &str, nth: usize| {
                line.split_whitespace()
                    .filter_map(|w| w.strip_prefix(key))
                    .nth(nth)
                    .and_then(|v| v.parse::<Ipv4Addr>().ok())
            };
            Some(Tracked {
                line: line.to_owned(),
                src: field("src=", 0)?,
                dst: field("dst=", 0)?,
                reply_src: field("src=", 1),
            })
        })
        .collect()
}

fn in_net(ip: Ipv4Addr, net: [u8; 3]) -> bool {
    ip.octets()[..3] == net
}

#[tokio::test]
#[ignore = "needs the local control plane and node: tests/run.sh"]
async fn nothing_the_node_runs_leaves_the_machine() {
    let cluster = TestCluster::connect().await.unwrap();
    let ns = cluster.namespace("node-traffic").await.unwrap();
    let node_ip: Ipv4Addr = std::env::var("SHIP_TESTBED_NODE_IP").unwrap().parse().unwrap();
    // A pod that talks to the API server through the `kubernetes` Service (TLS, unverified:
    // busybox cannot verify) and to a Service of its own, by address (there is no cluster DNS),
    // after trying a name: the node gives pods a resolver on their own loopback, so that lookup
    // must not reach the host's resolver either.
    let manifests = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  \
         ports: [{{port: 80, targetPort: 8080, protocol: TCP}}]\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  \
         selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      \
         containers: [{{name: web, image: ship.dev/demo-app:1, imagePullPolicy: Never, \
         readinessProbe: {{httpGet: {{path: /health, port: 8080}}, periodSeconds: 1}}}}]\n---\n\
         apiVersion: batch/v1\nkind: Job\nmetadata: {{name: caller, namespace: {ns}}}\nspec:\n  backoffLimit: 3\n  \
         template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: caller\n        \
         image: ship.dev/demo-app:1\n        imagePullPolicy: Never\n        command: [sh, -c, \
         'wget -q -T 2 -O /dev/null http://kubernetes.default.svc/ 2>/dev/null; \
         wget -q -O /dev/null --no-check-certificate https://$KUBERNETES_SERVICE_HOST/version; \
         until wget -q -O- http://$WEB_SERVICE_HOST/health; do sleep 0.5; done']\n"
    );
    let applied = cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests).unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let jobs: Api<Job> = Api::namespaced(cluster.client(), &ns);
    eventually("the caller Job succeeds", Duration::from_secs(90), || {
        let jobs = jobs.clone();
        async move {
            let job = jobs.get("caller").await?;
            Ok(job.status.and_then(|s| s.succeeded).filter(|n| *n > 0))
        }
    })
    .await
    .unwrap();

    let entries = tracked();
    let pods = [198, 18, 0];
    let services = [198, 19, 0];
    // 198.18.0.1 is the node's own address on the pods' bridge (its IGMP reports show up too).
    let bridge = Ipv4Addr::new(198, 18, 0, 1);
    let from_pods: Vec<&Tracked> = entries
        .iter()
        .filter(|t| in_net(t.src, pods) && t.src != bridge)
        .collect();
    assert!(
        !from_pods.is_empty(),
        "the caller's connections are tracked: {entries:#?}"
    );
    for t in &from_pods {
        // link-local multicast (224.0.0.0/24) is never routed off the link
        let inside = in_net(t.dst, pods)
            || in_net(t.dst, services)
            || t.dst == node_ip
            || t.dst.is_loopback()
            || in_net(t.dst, [224, 0, 0]);
        assert!(inside, "a pod's connection leaves the machine: {}", t.line);
    }
    for t in entries.iter().filter(|t| in_net(t.dst, services)) {
        // Every connection to a ClusterIP was answered by a pod or the node (kube-proxy's DNAT),
        // never routed off the machine.
        let answered_inside = t
            .reply_src
            .is_some_and(|r| in_net(r, pods) || r == node_ip || r.is_loopback());
        assert!(
            answered_inside,
            "a ClusterIP connection was not answered inside: {}",
            t.line
        );
    }
    let metadata = Ipv4Addr::new(169, 254, 169, 254);
    assert!(
        entries.iter().all(|t| t.dst != metadata),
        "something dialled the cloud metadata address"
    );
    eprintln!(
        "conntrack: {} entries, {} from pods, all inside",
        entries.len(),
        from_pods.len()
    );
    let _ = Command::new("kubectl")
        .args(["delete", "namespace", &ns, "--wait=false"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .output();
}
