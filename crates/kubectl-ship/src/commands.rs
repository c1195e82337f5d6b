//! The thin layer that talks to the API server (and, for `diff`, reads a local clone).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use ship_api::{
    Phase, PromotionOutcome, Reason, ShipEnvironment, ShipPromotion, ShipRelease, ShipReleaseSpec, keys,
};

use crate::{CliError, Output, Style, WaitArgs};
use ship_render::differences::Side;
use ship_view::report::{self, ReleaseRow};

/// The label on the Deployment of every Ship installation (the chart and `deploy/` set it), by
/// which `kubectl ship` finds Ship's namespace.
pub const INSTALLATION_LABEL: &str = "ship.dev/component=shipd";

/// Where Ship is, when no flag or `SHIP_NAMESPACE` says: the namespaces where a Deployment
/// carries [`INSTALLATION_LABEL`]. `None` when they cannot be listed (no right to list
/// Deployments cluster-wide, say).
async fn installations(client: &Client) -> Option<Vec<String>> {
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::all(client.clone());
    let listed = tokio::time::timeout(
        Duration::from_secs(10),
        deployments.list_metadata(&ListParams::default().labels(INSTALLATION_LABEL)),
    )
    .await
    .ok()?
    .ok()?;
    Some(
        listed
            .items
            .iter()
            .filter_map(|d| d.metadata.namespace.clone())
            .collect(),
    )
}

/// Ship's namespace from the installations found (pure): the one namespace they run in; `ship`
/// when none was found (or they could not be listed); an error naming them when there are
/// several, since a guess would show another installation's releases.
pub fn ship_namespace(found: Option<Vec<String>>) -> Result<String, CliError> {
    let mut namespaces = found.unwrap_or_default();
    namespaces.sort();
    namespaces.dedup();
    match namespaces.as_slice() {
        [] => Ok("ship".to_owned()),
        [only] => Ok(only.clone()),
        several => Err(CliError::NotFound(format!(
            "Ship runs in several namespaces ({}): choose one with --ship-namespace or SHIP_NAMESPACE",
            several.join(", ")
        ))),
    }
}

/// Candidates for kubectl's plugin completion (see [`crate::complete`]): subcommands and flags
/// from the command's definition, environment and release names from the cluster (none when it
/// cannot be reached within a few seconds).
pub async fn complete(words: &[String]) -> String {
    use crate::complete::{self, Wanted};
    use clap::CommandFactory;
    let command = crate::Cli::command();
    let partial = words.last().cloned().unwrap_or_default();
    let from_cluster = |kind: Wanted| async move {
        let namespace = complete::flag_value(words, &["-n", "--namespace", "--ship-namespace"])
            .or_else(|| std::env::var("SHIP_NAMESPACE").ok());
        let context = complete::flag_value(words, &["--context"]);
        let kubeconfig = complete::flag_value(words, &["--kubeconfig"]).map(PathBuf::from);
        let names = async {
            let target = Target::connect(kubeconfig, context, namespace).await.ok()?;
            if kind == Wanted::Release {
                names_in(target.releases()).await
            } else {
                names_in(target.environments()).await
            }
        };
        tokio::time::timeout(Duration::from_secs(5), names)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let candidates = match complete::wanted(words) {
        Wanted::Subcommand => complete::subcommands(&command),
        Wanted::Flag(subcommand) => complete::flags(&command, subcommand.as_deref()),
        Wanted::OutputFormat => ["table", "wide", "json", "yaml"].map(str::to_owned).to_vec(),
        Wanted::Shell => ["bash", "zsh", "fish", "elvish", "powershell"]
            .map(str::to_owned)
            .to_vec(),
        kind @ (Wanted::Environment | Wanted::Release) => from_cluster(kind).await,
        Wanted::Nothing => Vec::new(),
    };
    complete::answer(&candidates, &partial)
}

/// The names of the objects `api` lists (metadata only), or `None` when it cannot list them.
async fn names_in<K>(api: Api<K>) -> Option<Vec<String>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let listed = api.list_metadata(&ListParams::default()).await.ok()?;
    Some(listed.items.into_iter().filter_map(|o| o.metadata.name).collect())
}

/// Lines are cut to fit this many columns.
const WIDTH: usize = 80;

/// The cluster, namespace and person `kubectl ship` acts for.
#[derive(Clone)]
pub struct Target {
    client: Client,
    namespace: String,
    /// Who asks, for promotion requests: the kubeconfig user, else $USER.
    user: String,
}

impl Target {
    /// Connects the way kubectl does: `--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`
    /// (or the in-cluster configuration), with `--context` and `-n`.
    pub async fn connect(
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
        namespace: Option<String>,
    ) -> Result<Self, CliError> {
        let options = KubeConfigOptions {
            context: context.clone(),
            ..KubeConfigOptions::default()
        };
        let (config, user) = match kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(&path).map_err(|e| CliError::Config(e.to_string()))?;
                let user = user_of(&file, context.as_deref());
                let config = kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| CliError::Config(e.to_string()))?;
                (config, user)
            }
            None => {
                let user = Kubeconfig::read()
                    .ok()
                    .and_then(|f| user_of(&f, context.as_deref()));
                let config = match kube::Config::from_kubeconfig(&options).await {
                    Ok(config) => config,
                    Err(err) if context.is_none() => {
                        kube::Config::incluster().map_err(|_| CliError::Config(err.to_string()))?
                    }
                    Err(err) => return Err(CliError::Config(err.to_string())),
                };
                (config, user)
            }
        };
        let client = Client::try_from(config).map_err(CliError::Api)?;
        let namespace = match namespace {
            Some(namespace) => namespace,
            None => ship_namespace(installations(&client).await)?,
        };
        let user = user
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "kubectl-ship".into());
        Ok(Self {
            client,
            namespace,
            user,
        })
    }

    fn releases(&self) -> Api<ShipRelease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn promotions(&self) -> Api<ShipPromotion> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn environments(&self) -> Api<ShipEnvironment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The ShipEnvironment of `name`, or an error saying which exist.
    async fn environment(&self, name: &str) -> Result<ShipEnvironment, CliError> {
        if let Some(found) = self.environments().get_opt(name).await? {
            return Ok(found);
        }
        let known: Vec<String> = self
            .kept_environments()
            .await?
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        Err(CliError::NotFound(format!(
            "no ShipEnvironment {name:?} in namespace {:?} (known: {}): shipd makes one per environment of ship.yaml",
            self.namespace,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )))
    }

    /// The ShipEnvironments shipd keeps; none when their CRD is not installed (an older Ship).
    async fn kept_environments(&self) -> Result<Vec<ShipEnvironment>, CliError> {
        match self.environments().list(&ListParams::default()).await {
            Ok(list) => Ok(list.items),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
            Err(err) => Err(err.into()),
        }
    }

    /// Every release this kubectl-ship can read; each one it cannot (written by another Ship
    /// version, or edited by hand) is named on stderr and left out, not a failed command.
    async fn all_releases(&self) -> Result<Vec<ShipRelease>, CliError> {
        let guarded: Api<kube::core::DeserializeGuard<ShipRelease>> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let listed = ship_api::readable(guarded.list(&ListParams::default()).await?.items);
        for (name, why) in &listed.unreadable {
            eprintln!("warning: ShipRelease {name} cannot be read ({why}); it is left out");
        }
        let releases = listed.releases;
        if releases.is_empty() {
            return Err(CliError::NotFound(format!(
                "no ShipReleases in namespace {:?}: is this where shipd keeps them? (use -n)",
                self.namespace
            )));
        }
        Ok(releases)
    }
}

/// The user of the context in use, as the kubeconfig names it.
fn user_of(file: &Kubeconfig, context: Option<&str>) -> Option<String> {
    let name = context
        .map(str::to_owned)
        .or_else(|| file.current_context.clone())?;
    let found = file.contexts.iter().find(|c| c.name == name)?;
    found.context.as_ref()?.user.clone()
}

fn print_structured<T: Serialize>(style: Style, value: &T) -> Result<(), CliError> {
    let text = match style.output {
        Output::Yaml => serde_norway::to_string(value).map_err(|e| CliError::Output(e.to_string()))?,
        _ => serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.to_string()))? + "\n",
    };
    print!("{text}");
    Ok(())
}

fn structured(style: Style) -> bool {
    matches!(style.output, Output::Json | Output::Yaml)
}

use ship_api::names::short_sha as short;

/// `kubectl ship status`.
pub async fn status(target: &Target, style: Style) -> Result<ExitCode, CliError> {
    let releases = target.all_releases().await?;
    let promotions = target.promotions().list(&ListParams::default()).await?.items;
    let kept = target.kept_environments().await?;
    let environments = report::environments(&releases, &kept);
    let now = Timestamp::now();
    if structured(style) {
        #[derive(Serialize)]
        struct Promotion<'a> {
            name: String,
            from: &'a str,
            to: &'a str,
            status: Option<&'a ship_api::ShipPromotionStatus>,
        }
        #[derive(Serialize)]
        struct Status<'a> {
            environments: &'a [report::EnvironmentStatus],
            promotions: Vec<Promotion<'a>>,
        }
        let promotions = promotions
            .iter()
            .map(|p| Promotion {
                name: p.name_any(),
                from: &p.spec.from,
                to: &p.spec.to,
                status: p.status.as_ref(),
            })
            .collect();
        print_structured(
            style,
            &Status {
                environments: &environments,
                promotions,
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let wide = style.output == Output::Wide;
    let mut headers = vec!["ENV", "DEPLOYED", "PHASE", "TESTS", "AGE", "LAST GOOD", "SYNC"];
    if wide {
        headers.push("RELEASE");
    }
    headers.push("SUBJECT");
    let rows: Vec<Vec<String>> = environments
        .iter()
        .map(|e| {
            let deployed = e.deployed.as_ref();
            let mut row = vec![
                e.environment.clone(),
                deployed.map_or("-".into(), |d| d.short().to_owned()),
                e.latest.phase.clone(),
                e.latest.tests.clone(),
                e.latest.created.map(|t| report::age(now, t)).unwrap_or_default(),
                e.last_good.as_ref().map_or("-".into(), |g| g.short().to_owned()),
                // The reason is long; when it is not "Synced", a line below the table says it.
                e.sync.as_ref().map_or("-".into(), |s| {
                    match (s.hold.is_some(), s.in_sync == "True") {
                        (true, _) => "held",
                        (false, true) => "yes",
                        (false, false) => "no",
                    }
                    .to_owned()
                }),
            ];
            if wide {
                row.push(e.latest.name.clone());
            }
            row.push(deployed.map(|d| d.subject.clone()).unwrap_or_default());
            row
        })
        .collect();
    let width = if wide { usize::MAX / 2 } else { WIDTH };
    let text = report::table(&headers, &rows, width);
    // Colour after layout, so escape codes never count as width.
    let text = environments.iter().fold(text, |text, e| {
        if e.latest.phase.is_empty() || !style.colour {
            return text;
        }
        text.replacen(
            &format!("   {}   ", e.latest.phase),
            &format!("   {}   ", style.phase(&e.latest.phase)),
            1,
        )
    });
    print!("{text}");
    for e in &environments {
        if let Some(sync) = e.sync.as_ref().filter(|s| s.in_sync != "True") {
            let line = format!("{}: {}", e.environment, sync.message);
            println!("{}", report::fit(&line, WIDTH));
        }
        if let Some((hold, sync)) = e.sync.as_ref().and_then(|s| Some((s.hold.as_ref()?, s))) {
            // The sync sentence names a hold only when a tip waits on it.
            if sync.reason != ship_api::SyncReason::Held.as_str() {
                println!(
                    "{}",
                    report::fit(&format!("{}: {}", e.environment, hold.describe()), WIDTH)
                );
            }
            if !sync.held_commits.is_empty() {
                let line = format!(
                    "{}: held back: {} (kubectl ship resume {})",
                    e.environment,
                    sync.held_commits.join(", "),
                    e.environment
                );
                println!("{}", report::fit(&line, WIDTH));
            }
        }
        if let Some(verified) = e
            .sync
            .as_ref()
            .and_then(|s| s.verified.as_ref())
            .filter(|v| !v.passed)
        {
            let line = format!("{}: verification failing: {}", e.environment, verified.message);
            println!("{}", report::fit(&line, WIDTH));
        }
        // The failed tip's bisection: the culprit's failing test (the sync line says what it
        // found).
        let failed_tip = report::newest_first(&releases)
            .into_iter()
            .find(|r| r.spec.environment == e.environment && r.spec.reason != ship_api::Reason::Bisect);
        if let Some(row) = failed_tip.map(ReleaseRow::of) {
            for line in row.bisection_lines().into_iter().skip(1) {
                println!(
                    "{}",
                    report::fit(&format!("{}: {}", e.environment, line.trim_start()), WIDTH)
                );
            }
        }
        let deployed_other = e.deployed.as_ref().is_none_or(|d| d.name != e.latest.name);
        if deployed_other && !e.latest.message.is_empty() {
            let line = format!(
                "{}: {} {}: {}",
                e.environment,
                e.latest.short(),
                e.latest.phase,
                e.latest.message
            );
            println!("{}", report::fit(&line, WIDTH));
        }
    }
    for p in &promotions {
        if let Some(sentence) = report::behind_sentence(p, now) {
            println!("{}", report::fit(&sentence, WIDTH));
        }
        let status = p.status.as_ref();
        if let Some(next) = status.and_then(|s| s.next_schedule_time.as_ref()) {
            let last = status
                .and_then(|s| s.last_promotion.as_ref())
                .map(|l| {
                    format!(
                        "; last: {} by {}, {} ago",
                        l.commit.as_deref().map(short).unwrap_or("-"),
                        l.requested_by,
                        report::age(now, l.at.0)
                    )
                })
                .unwrap_or_default();
            let line = format!("next promotion: {}{last}", next.0.strftime("%a %b %d %H:%M UTC"));
            println!("{}", report::fit(&line, WIDTH));
        }
        let stalled = status
            .into_iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == "Stalled" && c.status == "True");
        if let Some(c) = stalled {
            println!(
                "{}",
                report::fit(&format!("promotion stalled: {}", c.message), WIDTH)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kubectl ship history ENV`.
pub async fn history(
    target: &Target,
    style: Style,
    environment: &str,
    limit: usize,
) -> Result<ExitCode, CliError> {
    let releases = target.all_releases().await?;
    let rows: Vec<ReleaseRow> = report::newest_first(&releases)
        .into_iter()
        .filter(|r| r.spec.environment == environment)
        .take(limit)
        .map(ReleaseRow::of)
        .collect();
    if rows.is_empty() {
        return Err(CliError::NotFound(format!(
            "no releases of environment {environment:?} in namespace {:?}",
            target.namespace
        )));
    }
    if structured(style) {
        print_structured(style, &rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = Timestamp::now();
    let wide = style.output == Output::Wide;
    let mut headers = vec!["NAME", "COMMIT", "REASON", "PHASE", "TESTS", "AGE"];
    if wide {
        headers.extend(["SUBJECT", "MESSAGE"]);
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                r.name.clone(),
                r.short().to_owned(),
                r.reason.clone(),
                r.phase.clone(),
                r.tests.clone(),
                r.created.map(|t| report::age(now, t)).unwrap_or_default(),
            ];
            if wide {
                row.extend([r.subject.clone(), r.message.clone()]);
            }
            row
        })
        .collect();
    let width = if wide { usize::MAX / 2 } else { WIDTH };
    print!("{}", report::table(&headers, &table_rows, width));
    for line in rows.iter().flat_map(ReleaseRow::bisection_lines) {
        println!("{}", report::fit(&line, width));
    }
    Ok(ExitCode::SUCCESS)
}

/// `kubectl ship hold ENV --reason TEXT [--freeze]`: sets the environment's `spec.hold`
/// (with `--freeze`, drift correction pauses too). A hold already there keeps its holder and
/// time; its reason and freeze change.
pub async fn hold(
    target: &Target,
    environment: &str,
    reason: &str,
    freeze: bool,
) -> Result<ExitCode, CliError> {
    let current = target.environment(environment).await?;
    let hold = match current.spec.hold {
        Some(existing) => ship_api::Hold {
            reason: reason.to_owned(),
            freeze,
            ..existing
        },
        None => ship_api::Hold {
            reason: reason.to_owned(),
            by: target.user.clone(),
            since: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::now(),
            )),
            freeze,
        },
    };
    let patch = serde_json::json!({"spec": {"hold": hold}});
    target
        .environments()
        .patch(environment, &cli_patch(), &Patch::Merge(&patch))
        .await?;
    eprintln!(
        "{environment} {}: new tips and promotions wait until `kubectl ship resume {environment}`",
        hold.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// `kubectl ship resume ENV`: removes the hold (whoever placed it); the newest tip deploys.
pub async fn resume(target: &Target, environment: &str) -> Result<ExitCode, CliError> {
    let current = target.environment(environment).await?;
    let Some(hold) = current.spec.hold else {
        eprintln!("{environment} is not held");
        return Ok(ExitCode::SUCCESS);
    };
    let patch = serde_json::json!({"spec": {"hold": null}});
    target
        .environments()
        .patch(environment, &cli_patch(), &Patch::Merge(&patch))
        .await?;
    let waiting = current
        .status
        .map(|s| s.held_commits)
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.short_commit)
        .collect::<Vec<_>>();
    let waiting = if waiting.is_empty() {
        String::new()
    } else {
        format!("; held back meanwhile: {}", waiting.join(", "))
    };
    eprintln!(
        "{environment} resumed (it was {}): the newest tip deploys{waiting}",
        hold.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// Patch parameters of `kubectl ship`'s own writes.
fn cli_patch() -> PatchParams {
    PatchParams {
        field_manager: Some(ship_api::CLI_FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

/// `kubectl ship promote`: asks the controller for a promotion now (the `ship.dev/requested-at`
/// annotation), and with `--wait` follows what it did. `force` overrides a hold on the target.
pub async fn promote(
    target: &Target,
    style: Style,
    to: Option<&str>,
    force: bool,
    wait: &WaitArgs,
) -> Result<ExitCode, CliError> {
    let promotions = target.promotions().list(&ListParams::default()).await?.items;
    let promotion = match to {
        Some(to) => promotions.into_iter().find(|p| p.name_any() == to || p.spec.to == to),
        None if promotions.len() > 1 => {
            return Err(CliError::NotFound("several ShipPromotions here: choose one with --to".into()));
        }
        None => promotions.into_iter().next(),
    }
    .ok_or_else(|| {
        CliError::NotFound(format!(
            "no ShipPromotion in namespace {:?}: shipd creates it once it follows a repository whose ship.yaml enables promotion",
            target.namespace
        ))
    })?;
    let name = promotion.name_any();
    let token = Timestamp::now().to_string();
    // `null` removes an override left by an earlier forced request.
    let patch = serde_json::json!({"metadata": {"annotations": {
        keys::REQUESTED_AT: token,
        keys::REQUESTED_BY: target.user,
        keys::OVERRIDE_HOLD: force.then_some("true"),
    }}});
    target
        .promotions()
        .patch(&name, &cli_patch(), &Patch::Merge(&patch))
        .await?;
    eprintln!(
        "promotion of {} into {} requested by {}",
        promotion.spec.from, promotion.spec.to, target.user
    );
    if !wait.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = tokio::time::Instant::now() + wait.timeout;
    let run = loop {
        let current = target.promotions().get(&name).await?;
        let status = current.status.unwrap_or_default();
        if status.last_handled_requested_at.as_deref() == Some(token.as_str())
            && let Some(run) = status.last_run
        {
            break run;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Failed(format!(
                "shipd did not take up the request within {:?}: is it running?",
                wait.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!("{}", run.message);
    match (run.outcome, run.release) {
        (PromotionOutcome::Promoted, Some(release)) => follow(target, style, &release, deadline).await,
        (PromotionOutcome::UpToDate, _) => Ok(ExitCode::SUCCESS),
        _ => Err(CliError::Failed(format!(
            "promotion not made ({}): {}",
            run.outcome.as_str(),
            run.message
        ))),
    }
}

/// `kubectl ship revert RELEASE`: asks shipd (an annotation on the release) to push a `git
/// revert` of the release's commit onto its branch's tip, and waits for the answer in
/// `status.revert`. Exit 0 when pushed, or when the tip already undoes it.
pub async fn revert(target: &Target, release: &str, timeout: Duration) -> Result<ExitCode, CliError> {
    let found = target.releases().get_opt(release).await?.ok_or_else(|| {
        CliError::NotFound(format!(
            "no release {release:?} in namespace {:?}",
            target.namespace
        ))
    })?;
    let token = Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {
        keys::REVERT_REQUESTED_AT: token,
        keys::REVERT_REQUESTED_BY: target.user,
    }}});
    target
        .releases()
        .patch(release, &cli_patch(), &Patch::Merge(&patch))
        .await?;
    eprintln!(
        "revert of commit {} on {} requested by {}",
        found.spec.short_commit(),
        found.spec.branch,
        target.user
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let answer = loop {
        let current = target.releases().get(release).await?;
        if let Some(record) = current.status.and_then(|s| s.revert)
            && record.requested_at == token
        {
            break record;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Failed(format!(
                "shipd did not answer within {timeout:?}: is it running?"
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!("{}", answer.message);
    if answer.outcome == ship_api::revert::Outcome::Refused.label() {
        return Err(CliError::Failed(answer.message));
    }
    Ok(ExitCode::SUCCESS)
}

/// `kubectl ship rollback ENV [--to COMMIT] [--hold [--reason TEXT]]`: a `reason: Rollback` release of
/// the target commit; with `--hold`, the environment is held first, so that no push undoes the
/// rollback while people talk.
pub async fn rollback(
    target: &Target,
    style: Style,
    environment: &str,
    to: Option<&str>,
    hold_with: Option<Option<String>>,
    wait: &WaitArgs,
) -> Result<ExitCode, CliError> {
    let releases = target.all_releases().await?;
    let (current, good) = report::rollback_target(&releases, environment, to)?;
    if let Some(reason) = hold_with {
        let reason = reason.unwrap_or_else(|| {
            format!(
                "rolled back from {} to {}",
                current.spec.short_commit(),
                good.spec.short_commit()
            )
        });
        hold(target, environment, &reason, false).await?;
    }
    let release = ShipRelease {
        metadata: ObjectMeta {
            generate_name: Some(format!("{environment}-rollback-")),
            labels: Some([(keys::ENVIRONMENT.to_owned(), environment.to_owned())].into()),
            annotations: Some(
                [(
                    keys::SEQUENCE.to_owned(),
                    Timestamp::now().as_millisecond().to_string(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: ShipReleaseSpec {
            environment: environment.to_owned(),
            commit: good.spec.commit.clone(),
            branch: current.spec.branch.clone(),
            reason: Reason::Rollback,
            rollback_of: Some(current.name_any()),
            promotion: None,
        },
        status: None,
    };
    let created = target.releases().create(&PostParams::default(), &release).await?;
    let name = created.name_any();
    eprintln!(
        "rolling {environment} back from {} to {} ({}) as release {name}",
        current.spec.short_commit(),
        good.spec.short_commit(),
        good.name_any()
    );
    if !wait.wait {
        println!("{name}");
        return Ok(ExitCode::SUCCESS);
    }
    follow(target, style, &name, tokio::time::Instant::now() + wait.timeout).await
}

/// Follows `name` until it settles, printing each transition; the exit code says how it ended.
async fn follow(
    target: &Target,
    style: Style,
    name: &str,
    deadline: tokio::time::Instant,
) -> Result<ExitCode, CliError> {
    let mut shown = 0;
    loop {
        let release = target.releases().get(name).await?;
        let status = release.status.clone().unwrap_or_default();
        for t in status.transitions.iter().skip(shown) {
            let line = format!(
                "{}  {}  {}",
                t.at.0.strftime("%H:%M:%S"),
                style.phase(t.phase.as_str()),
                t.message
            );
            println!(
                "{}",
                report::fit(&line, WIDTH + line.len().saturating_sub(line.chars().count()))
            );
        }
        shown = status.transitions.len();
        match release.phase() {
            Some(Phase::Succeeded) => return Ok(ExitCode::SUCCESS),
            Some(phase) if release.is_settled() => {
                return Err(CliError::Failed(format!(
                    "release {name} ended {phase}: {}",
                    status.message.unwrap_or_default()
                )));
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Timeout(Duration::from_secs(0).max(deadline.elapsed())));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `kubectl ship logs RELEASE`.
pub async fn logs(target: &Target, style: Style, name: &str) -> Result<ExitCode, CliError> {
    let release = target.releases().get_opt(name).await?.ok_or_else(|| {
        CliError::NotFound(format!(
            "no ShipRelease {name:?} in namespace {:?}",
            target.namespace
        ))
    })?;
    let tests = release.status.map(|s| s.tests).unwrap_or_default();
    if structured(style) {
        print_structured(style, &tests)?;
        return Ok(ExitCode::SUCCESS);
    }
    if tests.is_empty() {
        return Err(CliError::NotFound(format!(
            "release {name} has no test results (yet)"
        )));
    }
    for test in tests {
        let took = test
            .duration_millis
            .map(|ms| format!(", {ms} ms"))
            .unwrap_or_default();
        println!("== {} ({}{took})", test.name, style.phase(verdict(test.verdict)));
        if !test.message.is_empty() {
            println!("{}", test.message);
        }
        if !test.log.is_empty() {
            print!("{}", test.log);
            if !test.log.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verdict(v: ship_api::TestVerdict) -> &'static str {
    match v {
        ship_api::TestVerdict::Passed => "Passed",
        ship_api::TestVerdict::Failed => "Failed",
        ship_api::TestVerdict::Running => "Running",
    }
}

/// `kubectl ship diff FROM TO`.
pub async fn diff(
    target: &Target,
    from: &str,
    to: &str,
    repo: &Path,
    hide_expected: bool,
    undeclared_only: bool,
) -> Result<ExitCode, CliError> {
    let releases = target.all_releases().await?;
    let environments = report::environments(&releases, &[]);
    let deployed = |env: &str| -> Result<String, CliError> {
        environments
            .iter()
            .find(|e| e.environment == env)
            .and_then(|e| e.deployed.as_ref())
            .map(|d| d.commit.clone())
            .ok_or_else(|| CliError::NotFound(format!("nothing is deployed in environment {env:?} yet")))
    };
    let (from_commit, to_commit) = (deployed(from)?, deployed(to)?);
    let repo = repo.to_owned();
    let (f, t) = (from.to_owned(), to.to_owned());
    let (fc, tc) = (from_commit.clone(), to_commit.clone());
    let (a, b) = tokio::task::spawn_blocking(move || -> Result<(Side, Side), CliError> {
        let mirror = ship_git::Mirror::open_local(&repo).map_err(|e| CliError::Repo(e.to_string()))?;
        Ok((rendered(&mirror, &fc, &f)?, rendered(&mirror, &tc, &t)?))
    })
    .await
    .map_err(|e| CliError::Repo(e.to_string()))??;
    // The ways the environments may differ, as the first environment's ship.yaml declares
    // them (main: where configuration changes land first).
    use ship_render::differences::{FieldDifference, undeclared};
    let fields = a.compare(&b);
    let declared_by = |d: &FieldDifference| ship_render::differences::declared_by(d, &a.declared);
    if undeclared_only {
        let undeclared = undeclared(&fields, &a.declared);
        for d in &undeclared {
            println!("{}", d.describe());
        }
        if undeclared.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "{} undeclared difference(s) between {from} and {to}: eliminate them, or declare them in ship.yaml's `differences`",
            undeclared.len()
        );
        return Ok(ExitCode::from(1));
    }
    let labels = (
        format!("{from}@{}", short(&from_commit)),
        format!("{to}@{}", short(&to_commit)),
    );
    let text = |side: &Side| crate::diff::documents(&side.objects, &side.namespace, hide_expected);
    let Some(unified) = crate::diff::unified(&text(&a), &text(&b), &labels.0, &labels.1) else {
        return Ok(ExitCode::SUCCESS);
    };
    print!("{unified}");
    if !fields.is_empty() {
        println!("\n# {} field(s) differ:", fields.len());
        for d in &fields {
            match declared_by(d) {
                Some(c) => println!(
                    "#   declared    {}{}",
                    d.describe(),
                    c.reason
                        .as_deref()
                        .map(|r| format!("  ({r})"))
                        .unwrap_or_default()
                ),
                None => println!("#   UNDECLARED  {}", d.describe()),
            }
        }
    }
    Ok(ExitCode::from(1))
}

/// `env`'s objects at `commit`, rendered from the local clone.
fn rendered(mirror: &ship_git::Mirror, commit: &str, env: &str) -> Result<Side, CliError> {
    let oid = git2::Oid::from_str(commit).map_err(|e| CliError::Repo(e.to_string()))?;
    if mirror.repository().find_commit(oid).is_err() {
        return Err(CliError::Repo(format!(
            "commit {} (deployed in {env}) is not in the local repository: run `git fetch` there, or pass --repo",
            short(commit)
        )));
    }
    let dir = tempfile::tempdir().map_err(|e| CliError::Repo(e.to_string()))?;
    mirror
        .export_tree(oid, dir.path(), ship_git::mirror::ExportLimits::default())
        .map_err(|e| CliError::Repo(e.to_string()))?;
    let rendered = ship_render::render_environment(
        &ship_render::tools::Processes,
        dir.path(),
        env,
        &ship_render::Limits::default(),
    )
    .map_err(|e| CliError::Repo(format!("{env} at {}: {e}", short(commit))))?;
    Ok(Side::of(rendered, env))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ships_namespace_is_the_one_it_runs_in_else_ship() {
        assert_eq!(ship_namespace(None).unwrap(), "ship", "not listable: the default");
        assert_eq!(ship_namespace(Some(vec![])).unwrap(), "ship", "none found");
        assert_eq!(
            ship_namespace(Some(vec!["delivery".into(), "delivery".into()])).unwrap(),
            "delivery",
            "two replicas' Deployment listed twice is one installation"
        );
        let several = ship_namespace(Some(vec!["team-b".into(), "team-a".into()]))
            .unwrap_err()
            .to_string();
        assert!(
            several.contains("team-a, team-b") && several.contains("--ship-namespace"),
            "{several}"
        );
    }
}
