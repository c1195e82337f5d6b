//! One base, per-environment values, on the real control plane: both environments deploy the
//! same files with their own `vars`; `kubectl ship diff --undeclared` fails on the difference
//! until ship.yaml declares it; and a `${name}` nobody declared fails the release in Pending,
//! naming the file and line, with nothing applied.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use ship_api::Phase;
use ship_testkit::stack::{Stack, ready_reason, release_name};

const SETTLE: Duration = Duration::from_secs(60);

async fn body(stack: &Stack, namespace: &str) -> String {
    let web = Api::<ConfigMap>::namespaced(stack.cluster.client(), namespace)
        .get("web")
        .await
        .unwrap();
    web.data
        .unwrap_or_default()
        .get("body")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_shared_base_deploys_each_environment_with_its_vars_and_an_undeclared_one_fails_in_pending() {
    let mut stack = Stack::new("vars", "{enabled: false}").await.unwrap();
    stack.deploy_first(&[]).await.unwrap();
    let (ns, prod) = (stack.ns.clone(), format!("{}-prod", stack.ns));
    let ship_yaml = format!(
        "environments:\n  main: {{namespace: {ns}, path: deploy/base, vars: {{greeting: healthy main}}}}\n  \
         production: {{namespace: {prod}, path: deploy/base, vars: {{greeting: healthy production}}}}\n\
         health: {{timeout: 30s}}\npromotion: {{enabled: false}}\n\
         tests:\n- name: home\n  http: {{url: '{}', expect: {{bodyContains: healthy}}}}\n",
        stack.app_health_url()
    );
    let base = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata:\n  body: \"${greeting}\"\n  \
                script: \"echo $${HOME}\"\n";
    let shared = stack
        .push_main(
            &[("ship.yaml", &ship_yaml), ("deploy/base/web.yaml", base)],
            "one base for both",
        )
        .unwrap();
    stack
        .settled(&release_name("main", &shared), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    assert_eq!(body(&stack, &ns).await, "healthy main");
    // Production gets the same commit, and its own value.
    stack.remote.push("production", true).unwrap();
    stack
        .settled(&release_name("production", &shared), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    assert_eq!(body(&stack, &prod).await, "healthy production");
    let web = Api::<ConfigMap>::namespaced(stack.cluster.client(), &prod)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.data.unwrap()["script"],
        "echo ${HOME}",
        "the escape is the text itself"
    );

    // `kubectl ship diff --undeclared`: the body differs (through vars) and ship.yaml does
    // not declare it yet: listed, exit 1. Declared on main: exit 0, and the full diff marks it.
    let clone = stack.remote.work.display().to_string();
    let undeclared = ["diff", "main", "production", "--repo", &clone, "--undeclared"];
    let out = stack.kubectl_ship(&undeclared).await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        said,
        "ConfigMap/web data.body: \"healthy main\" -> \"healthy production\"\n"
    );
    let declared = format!(
        "{ship_yaml}differences:\n- {{kind: ConfigMap, path: data.body, reason: each environment greets as itself}}\n"
    );
    let declaring = stack
        .push_main(&[("ship.yaml", &declared)], "declare the greeting difference")
        .unwrap();
    stack
        .settled(&release_name("main", &declaring), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let out = stack.kubectl_ship(&undeclared).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    let out = stack
        .kubectl_ship(&["diff", "main", "production", "--repo", &clone])
        .await
        .unwrap();
    let full = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the environments still differ: {full}"
    );
    assert!(
        full.contains("#   declared    ConfigMap/web data.body: \"healthy main\" -> \"healthy production\"  (each environment greets as itself)"),
        "{full}"
    );

    // A variable nobody declared: Failed in Pending, the file and line named, nothing applied.
    let undeclared = base.replace("${greeting}", "${greting}");
    let typo = stack
        .push_main(&[("deploy/base/web.yaml", &undeclared)], "typo in a variable")
        .unwrap();
    let failed = stack
        .settled(&release_name("main", &typo), Phase::Failed, SETTLE)
        .await
        .unwrap();
    assert_eq!(ready_reason(&failed), "UndeclaredVariable");
    let status = failed.status.unwrap();
    let message = status.message.unwrap();
    assert!(
        message.contains("deploy/base/web.yaml:5: ${greting} is not declared"),
        "{message}"
    );
    assert!(
        status.inventory.is_empty(),
        "nothing applied: {:?}",
        status.inventory
    );
    assert_eq!(body(&stack, &ns).await, "healthy main");
}
