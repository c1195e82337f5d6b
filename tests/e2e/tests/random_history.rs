//! Randomized histories: a seeded generator plays git operations a real team does (good and
//! bad commits, several at once, force-pushes back to released commits and to unrelated
//! histories, a branch deleted and re-created, a manual rollback, a promotion, shipd SIGKILLed
//! between operations, sometimes with its mirror lost and the branch moved while it was down)
//! against a real shipd, apiserver and git daemon. After each operation settles, invariants
//! are checked, not examples:
//! - the cluster runs each branch's tip, unless the tip failed here (then the last good release
//!   runs), a manual rollback holds, or the branch is missing (then nothing changed);
//! - no object Ship does not own is deleted (a hand-made Secret and PVC in each namespace);
//! - no release is lost;
//! - every status is settled, and each ShipEnvironment says what is true.
//!
//! CI runs seeds 1-6, 17 operations each (102). A longer run:
//! `SHIP_HISTORY_SEEDS=1-40 SHIP_HISTORY_STEPS=25 SHIP_TEST_FILTER='test(random_histories)' tests/run.sh`.
//! A failing seed prints the command that replays it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use ship_api::environment::{BRANCH_MISSING, IN_SYNC};
use ship_api::{Phase, ShipRelease, keys};
use ship_testkit::cluster::eventually;
use ship_testkit::git::git;
use ship_testkit::seeded::{Seeded, parse_seeds};
use ship_testkit::stack::{Stack, configmap, environment_condition, release_name};

const ENVIRONMENTS: [&str; 2] = ["main", "production"];
const SETTLE: Duration = Duration::from_secs(90);
/// Seeds run at once (each has its own namespaces, repository and shipd).
const PARALLEL: usize = 3;

/// One operation, as the generator draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    GoodCommit,
    BadCommit,
    SeveralCommits,
    BackToReleased,
    UnrelatedHistory,
    DeleteAndRecreate,
    ManualRollback,
    Promotion,
    KillShipd,
}

/// Weights: commits are most common, as in a real repository.
const OPS: [(Op, usize); 9] = [
    (Op::GoodCommit, 18),
    (Op::BadCommit, 12),
    (Op::SeveralCommits, 10),
    (Op::BackToReleased, 12),
    (Op::UnrelatedHistory, 6),
    (Op::DeleteAndRecreate, 8),
    (Op::ManualRollback, 8),
    (Op::Promotion, 10),
    (Op::KillShipd, 16),
];

fn draw(rng: &mut Seeded) -> Op {
    let total: usize = OPS.iter().map(|(_, w)| w).sum();
    let mut at = rng.below(total);
    for (op, weight) in OPS {
        if at < weight {
            return op;
        }
        at -= weight;
    }
    Op::GoodCommit
}

/// What the test knows of the history it made.
struct World {
    stack: Stack,
    rng: Seeded,
    /// Each commit made here: the `web` body it declares for each environment, and whether it
    /// passes the `home` test (the body says `healthy`).
    bodies: HashMap<String, [String; 2]>,
    /// Commits each branch was at after an operation settled (force-push targets).
    released: BTreeMap<&'static str, Vec<String>>,
    /// Environment held by a manual rollback, with the tip it was at then.
    held: BTreeMap<&'static str, String>,
    /// Every release seen so far.
    seen: BTreeSet<String>,
    /// The objects Ship does not own: kind/namespace/name and uid.
    unowned: Vec<(String, String)>,
    /// Operations done, for the failure report.
    done: Vec<String>,
    counter: u32,
    covered: BTreeMap<Op, u32>,
}

fn namespace_of(stack: &Stack, env: &str) -> String {
    if env == "main" {
        stack.ns.clone()
    } else {
        format!("{}-prod", stack.ns)
    }
}

fn is_good(body: &str) -> bool {
    body.starts_with("healthy")
}

impl World {
    fn tip(&self, branch: &str) -> Option<String> {
        self.stack.branch_tip(branch).ok()
    }

    /// Checks out `branch` from the served repository into the working clone.
    fn checkout(&self, branch: &str) -> anyhow::Result<()> {
        let remote = &self.stack.remote;
        remote.git(&["fetch", "-q", "--prune", "origin"])?;
        remote.git(&[
            "checkout",
            "-q",
            "-f",
            "-B",
            &format!("work-{branch}"),
            &format!("origin/{branch}"),
        ])?;
        Ok(())
    }

    /// A commit on what is checked out, good or bad for both environments.
    fn commit(&mut self, good: bool) -> anyhow::Result<String> {
        self.counter += 1;
        let body = if good {
            format!("healthy v{}", self.counter)
        } else {
            format!("broken v{}", self.counter)
        };
        let web = configmap(&body);
        let commit = self.stack.remote.commit_files(
            &[
                ("deploy/main/web.yaml", &web),
                ("deploy/production/web.yaml", &web),
            ],
            &format!("{} v{}", if good { "good" } else { "bad" }, self.counter),
        )?;
        self.bodies.insert(commit.clone(), [body.clone(), body]);
        Ok(commit)
    }

    fn push(&self, branch: &str, commit: &str, force: bool) -> anyhow::Result<()> {
        let refspec = format!("{}{commit}:refs/heads/{branch}", if force { "+" } else { "" });
        self.stack.remote.git(&["push", "-q", "origin", &refspec])?;
        Ok(())
    }

    fn branch(&mut self) -> &'static str {
        ENVIRONMENTS[self.rng.below(ENVIRONMENTS.len())]
    }

    /// One git operation on a random branch (also used while shipd is down). Returns what it did.
    fn git_op(&mut self, op: Op) -> anyhow::Result<String> {
        let branch = self.branch();
        match op {
            Op::GoodCommit | Op::BadCommit => {
                self.checkout(branch)?;
                let commit = self.commit(op == Op::GoodCommit)?;
                self.push(branch, &commit, false)?;
                Ok(format!("{op:?} {branch} {}", &commit[..7]))
            }
            Op::SeveralCommits => {
                self.checkout(branch)?;
                let n = 2 + self.rng.below(3);
                let mut made = Vec::new();
                for _ in 0..n {
                    let good = self.rng.chance(70);
                    made.push(self.commit(good)?);
                }
                let last = made.last().cloned().unwrap_or_default();
                self.push(branch, &last, false)?;
                Ok(format!("{n} commits on {branch}, last {}", &last[..7]))
            }
            Op::BackToReleased => {
                let tip = self.tip(branch).unwrap_or_default();
                let older: Vec<String> = self.released[branch]
                    .iter()
                    .filter(|c| **c != tip)
                    .cloned()
                    .collect();
                if older.is_empty() {
                    return self.git_op(Op::GoodCommit);
                }
                let target = self.rng.pick(&older).clone();
                self.push(branch, &target, true)?;
                Ok(format!("force-push {branch} back to {}", &target[..7]))
            }
            Op::UnrelatedHistory => {
                self.checkout(branch)?;
                self.counter += 1;
                self.stack.remote.git(&[
                    "checkout",
                    "-q",
                    "--orphan",
                    &format!("orphan-{}", self.counter),
                ])?;
                let good = self.rng.chance(75);
                let commit = self.commit(good)?;
                self.push(branch, &commit, true)?;
                Ok(format!(
                    "force-push {branch} to an unrelated history {}",
                    &commit[..7]
                ))
            }
            other => bail!("{other:?} is not a git operation"),
        }
    }

    async fn releases(&self) -> anyhow::Result<Vec<ShipRelease>> {
        Ok(self.stack.releases().list(&Default::default()).await?.items)
    }

    /// Waits until everything has settled on what git says now.
    async fn settle(&self, promotion_marker: Option<&str>) -> anyhow::Result<()> {
        let stack = &self.stack;
        // What was still unsettled at the last look, for the failure report.
        let waiting = std::sync::Mutex::new(String::new());
        let waiting = &waiting;
        let not_yet = |why: String| {
            *waiting.lock().unwrap() = why;
            Ok(None)
        };
        let settled = eventually("everything settled", SETTLE, || {
            // Read each time: a promotion moves production's tip while this waits.
            let tips: Vec<Option<String>> = ENVIRONMENTS.iter().map(|b| self.tip(b)).collect();
            async move {
                // The promotion first: Ship makes its release before it marks the request
                // handled, so a list taken after seeing the mark holds that release. Read the
                // other way round, a release made between the two reads was missed, and the
                // next step raced the promotion's push (seed 9, 20 steps).
                if let Some(marker) = promotion_marker {
                    let promotion = stack.promotions().get_opt("production").await?;
                    let handled = promotion
                        .and_then(|p| p.status)
                        .and_then(|s| s.last_handled_requested_at);
                    if handled.as_deref() != Some(marker) {
                        return not_yet(format!("the promotion has not handled {marker}"));
                    }
                }
                let releases = stack.releases().list(&Default::default()).await?.items;
                if let Some(busy) = releases.iter().find(|r| !r.is_settled()) {
                    return not_yet(format!("release {} is {:?}", busy.name_any(), busy.phase()));
                }
                for (env, tip) in ENVIRONMENTS.iter().zip(&tips) {
                    let Some(e) = stack.environments().get_opt(env).await? else {
                        return not_yet(format!("no ShipEnvironment {env}"));
                    };
                    let status = e.status.clone().unwrap_or_default();
                    let missing = environment_condition(&e, BRANCH_MISSING).map(|(s, _)| s);
                    let reason = environment_condition(&e, IN_SYNC)
                        .map(|(_, r)| r)
                        .unwrap_or_default();
                    match tip {
                        None if missing.as_deref() != Some("True") => {
                            return not_yet(format!("{env}: branch deleted, BranchMissing is {missing:?}"));
                        }
                        None => {}
                        Some(tip) => {
                            let fresh = missing.as_deref() == Some("False")
                                && status.tip.as_ref().map(|t| &t.commit) == Some(tip)
                                && status.last_handled_tip.as_ref() == Some(tip)
                                && !matches!(reason.as_str(), "Pending" | "Progressing" | "NotFetched" | "");
                            if !fresh {
                                return not_yet(format!(
                                    "{env}: tip {}, InSync {reason}: {}",
                                    &tip[..7],
                                    status.message.clone().unwrap_or_default()
                                ));
                            }
                        }
                    }
                    // The environment's view of its releases is the current one.
                    let newest = ship_api::environment::releases_of(env, &releases).map(|f| f.latest);
                    let latest = status.latest.as_ref();
                    if newest.map(|r| (r.name_any(), r.phase())) != latest.map(|l| (l.name.clone(), l.phase))
                    {
                        return not_yet(format!("{env}: the ShipEnvironment has not caught up"));
                    }
                }
                Ok(Some(()))
            }
        })
        .await;
        settled.with_context(|| format!("still waiting: {}", waiting.lock().unwrap()))
    }

    /// The invariants, after a settle.
    async fn check(&mut self, before_delete: Option<&BTreeMap<String, String>>) -> anyhow::Result<()> {
        for env in ENVIRONMENTS {
            let ns = namespace_of(&self.stack, env);
            let e = self.stack.environments().get(env).await?;
            let reason = environment_condition(&e, IN_SYNC)
                .map(|(_, r)| r)
                .unwrap_or_default();
            let web = Api::<ConfigMap>::namespaced(self.stack.cluster.client(), &ns)
                .get("web")
                .await?;
            let running = web.annotations().get(keys::COMMIT).cloned().unwrap_or_default();
            let body = web
                .data
                .clone()
                .unwrap_or_default()
                .get("body")
                .cloned()
                .unwrap_or_default();
            let Some(tip) = self.tip(env) else {
                ensure!(
                    reason == "BranchMissing",
                    "{env}: branch deleted, InSync says {reason}"
                );
                if let Some(before) = before_delete {
                    ensure!(
                        before.get(env) == Some(&running),
                        "{env}: the branch was deleted and the cluster changed: {running}"
                    );
                }
                continue;
            };
            let index = usize::from(env == "production");
            let declared = self.bodies.get(&tip).map(|b| b[index].clone());
            ensure!(is_good(&body), "{env}: runs a body that fails its test: {body:?}");
            if self.held.get(env) == Some(&tip) {
                ensure!(
                    reason == "ManualRollback",
                    "{env}: held by a manual rollback, InSync says {reason}"
                );
                ensure!(running != tip, "{env}: a manual rollback holds, yet the tip runs");
                continue;
            }
            match declared {
                Some(declared) if is_good(&declared) => {
                    ensure!(
                        reason == "Synced",
                        "{env}: good tip {}, InSync says {reason}",
                        &tip[..7]
                    );
                    ensure!(running == tip, "{env}: tip {} but {running} runs", &tip[..7]);
                    ensure!(
                        body == declared,
                        "{env}: runs {body:?}, the tip declares {declared:?}"
                    );
                }
                Some(_) => {
                    ensure!(
                        reason == "TipFailed",
                        "{env}: bad tip {}, InSync says {reason}",
                        &tip[..7]
                    );
                    let deployed = e.status.as_ref().and_then(|s| s.deployed.clone());
                    ensure!(
                        deployed.as_ref().map(|d| &d.commit) == Some(&running),
                        "{env}: the cluster runs {running}, the status says {deployed:?}"
                    );
                }
                None => bail!("{env}: tip {tip} is no commit this test made"),
            }
        }
        for (object, uid) in &self.unowned {
            let now = self.uid_of(object).await?;
            ensure!(
                now.as_ref() == Some(uid),
                "{object} was deleted or replaced (uid {now:?})"
            );
        }
        let names: BTreeSet<String> = self.releases().await?.into_iter().map(|r| r.name_any()).collect();
        let lost: Vec<&String> = self.seen.difference(&names).collect();
        ensure!(lost.is_empty(), "releases lost: {lost:?}");
        self.seen = names;
        for env in ENVIRONMENTS {
            if let Some(tip) = self.tip(env) {
                let list = self.released.entry(env).or_default();
                if !list.contains(&tip) {
                    list.push(tip);
                }
            }
        }
        Ok(())
    }

    async fn uid_of(&self, object: &str) -> anyhow::Result<Option<String>> {
        let client = self.stack.cluster.client();
        let parts: Vec<&str> = object.split('/').collect();
        let (kind, ns, name) = (parts[0], parts[1], parts[2]);
        Ok(match kind {
            "Secret" => Api::<Secret>::namespaced(client, ns)
                .get_opt(name)
                .await?
                .and_then(|o| o.uid()),
            _ => Api::<PersistentVolumeClaim>::namespaced(client, ns)
                .get_opt(name)
                .await?
                .and_then(|o| o.uid()),
        })
    }

    /// Clears a hold whose environment's tip moved.
    fn forget_moved_holds(&mut self) {
        let tips: BTreeMap<&str, Option<String>> = ENVIRONMENTS.iter().map(|e| (*e, self.tip(e))).collect();
        self.held
            .retain(|env, at| tips[env].as_ref().is_none_or(|t| t == at));
    }

    async fn running(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut running = BTreeMap::new();
        for env in ENVIRONMENTS {
            let ns = namespace_of(&self.stack, env);
            let web = Api::<ConfigMap>::namespaced(self.stack.cluster.client(), &ns)
                .get("web")
                .await?;
            running.insert(
                env.to_owned(),
                web.annotations().get(keys::COMMIT).cloned().unwrap_or_default(),
            );
        }
        Ok(running)
    }

    /// Draws and plays one operation, then settles and checks.
    async fn step(&mut self, n: usize) -> anyhow::Result<()> {
        let op = draw(&mut self.rng);
        *self.covered.entry(op).or_default() += 1;
        let mut marker = None;
        let what = match op {
            Op::GoodCommit
            | Op::BadCommit
            | Op::SeveralCommits
            | Op::BackToReleased
            | Op::UnrelatedHistory => self.git_op(op)?,
            Op::DeleteAndRecreate => {
                let branch = self.branch();
                let was = self.tip(branch).unwrap_or_default();
                let before = self.running().await?;
                git(&self.stack.remote.bare, &["branch", "-D", branch])?;
                self.done.push(format!("{n}: delete {branch} (at {})", &was[..7]));
                self.settle(None).await?;
                self.check(Some(&before)).await?;
                let back = if self.rng.chance(50) {
                    was.clone()
                } else {
                    self.rng.pick(&self.released[branch].clone()).clone()
                };
                self.push(branch, &back, true)?;
                format!("re-create {branch} at {}", &back[..7])
            }
            Op::ManualRollback => {
                let env = self.branch();
                let out = self.stack.kubectl_ship(&["rollback", env]).await?;
                if out.status.success() {
                    self.held.insert(env, self.tip(env).unwrap_or_default());
                    format!("kubectl ship rollback {env}")
                } else {
                    format!(
                        "kubectl ship rollback {env} refused: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                }
            }
            Op::Promotion => {
                let value = format!("step-{n}");
                self.stack.request_promotion(&value, "random-history").await?;
                marker = Some(value);
                "promotion requested".to_owned()
            }
            Op::KillShipd => {
                self.stack.kill_shipd()?;
                let mut what = "SIGKILL shipd".to_owned();
                if self.rng.chance(50) {
                    let during = *self.rng.pick(&[
                        Op::GoodCommit,
                        Op::BadCommit,
                        Op::BackToReleased,
                        Op::UnrelatedHistory,
                    ]);
                    what.push_str(&format!("; while down: {}", self.git_op(during)?));
                }
                if self.rng.chance(50) {
                    self.stack.wipe_mirror()?;
                    what.push_str("; mirror lost");
                }
                self.stack.start_shipd(&["--history-limit", "1000"])?;
                what.push_str("; restarted");
                what
            }
        };
        self.done.push(format!("{n}: {what}"));
        self.settle(marker.as_deref()).await?;
        // A promotion, like any push, moves a tip; a hold ends when its tip moves.
        self.forget_moved_holds();
        self.check(None).await
    }
}

async fn unowned_objects(stack: &Stack) -> anyhow::Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for env in ENVIRONMENTS {
        let ns = namespace_of(stack, env);
        let client = stack.cluster.client();
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "hand-made"}, "stringData": {"token": "made by a person"}
        }))?;
        let secret = Api::<Secret>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &secret)
            .await?;
        let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }))?;
        let pvc = Api::<PersistentVolumeClaim>::namespaced(client, &ns)
            .create(&PostParams::default(), &pvc)
            .await?;
        found.push((format!("Secret/{ns}/hand-made"), secret.uid().unwrap_or_default()));
        found.push((
            format!("PersistentVolumeClaim/{ns}/data"),
            pvc.uid().unwrap_or_default(),
        ));
    }
    Ok(found)
}

/// The operations a seed covered, or the report of what broke.
type Played = Result<BTreeMap<Op, u32>, String>;

/// Plays `steps` operations of `seed`.
async fn play(seed: u64, steps: usize) -> Played {
    let mut stack = Stack::new(&format!("hist{seed}"), "{enabled: true}")
        .await
        .map_err(|e| format!("{e:#}"))?;
    let setup = async {
        let first = stack.deploy_first(&["--history-limit", "1000"]).await?;
        stack.remote.push("production", true)?;
        let production = release_name("production", &first);
        stack.settled(&production, Phase::Succeeded, SETTLE).await?;
        anyhow::Ok(first)
    }
    .await
    .map_err(|e| format!("seed {seed} setup: {e:#}"))?;
    let unowned = unowned_objects(&stack).await.map_err(|e| format!("{e:#}"))?;
    let mut world = World {
        bodies: HashMap::from([(
            setup.clone(),
            ["healthy main".to_owned(), "healthy production".to_owned()],
        )]),
        released: BTreeMap::new(),
        held: BTreeMap::new(),
        seen: BTreeSet::new(),
        unowned,
        done: Vec::new(),
        counter: 0,
        covered: BTreeMap::new(),
        rng: Seeded::new(seed),
        stack,
    };
    let result = async {
        world.settle(None).await?;
        world.check(None).await?;
        for n in 1..=steps {
            world.step(n).await.with_context(|| format!("after step {n}"))?;
        }
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(world.covered),
        Err(err) => Err(format!(
            "seed {seed} failed: {err:#}\noperations:\n  {}\nreplay: SHIP_HISTORY_SEEDS={seed} SHIP_HISTORY_STEPS={steps} \
             SHIP_TEST_FILTER='test(random_histories)' tests/run.sh\nshipd logs (end):\n{}",
            world.done.join("\n  "),
            tail(&world.stack.logs(), 6000)
        )),
    }
}

fn tail(text: &str, bytes: usize) -> &str {
    let start = text.len().saturating_sub(bytes);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    &text[start..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn random_histories_keep_the_invariants() {
    let seeds = parse_seeds(&std::env::var("SHIP_HISTORY_SEEDS").unwrap_or_else(|_| "1-6".into())).unwrap();
    let steps: usize = std::env::var("SHIP_HISTORY_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(17);
    let results: Vec<(u64, Played)> = futures::stream::iter(seeds.clone())
        .map(|seed| async move { (seed, play(seed, steps).await) })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut covered: BTreeMap<Op, u32> = BTreeMap::new();
    let mut failures = Vec::new();
    for (_, result) in results {
        match result {
            Ok(ops) => ops
                .into_iter()
                .for_each(|(op, n)| *covered.entry(op).or_default() += n),
            Err(report) => failures.push(report),
        }
    }
    println!("seeds {seeds:?}, {steps} operations each; operations covered: {covered:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
