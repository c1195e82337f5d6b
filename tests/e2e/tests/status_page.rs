//! The status page in a real browser (Debian's headless Chromium through ChromeDriver), read
//! as a person sees it: during a rollback it shows the release rolling back and its failed
//! test with the end of its log; once rolled back, the good commit deployed, the rolled-back
//! release with its suspects, and the history. A screenshot of each is kept as an artifact
//! (target/artifacts/).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use ship_api::Phase;
use ship_testkit::browser::Browser;
use ship_testkit::cluster::repo_root;
use ship_testkit::stack::{Stack, release_name};

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test]
#[ignore = "needs the local control plane and chromium: tests/run.sh"]
async fn the_status_page_shows_a_rollback_as_it_happens() {
    let mut stack = Stack::new("page", "{enabled: false}").await.unwrap();
    // Each rollback waits 6 s after it is recorded, so the browser finds it in progress.
    let good = stack
        .deploy_first(&["--test-pause-after", "RollingBack:6s"])
        .await
        .unwrap();
    let page = format!("http://{}/status", stack.shipd.as_ref().unwrap().probe_addr);
    let artifacts = repo_root().join("target/artifacts");
    let browser = Browser::start().await.unwrap();

    browser.open(&page).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Ship: what is deployed where");
    let text = browser.visible_text().await.unwrap();
    assert!(
        text.contains(&format!("Deployed: {} sample app", &good[..7])),
        "{text}"
    );
    assert!(text.contains("Succeeded"), "{text}");

    let (bad, bad_release) = stack.push_broken_main("bad: breaks the page").unwrap();
    stack
        .release_where(&bad_release, SETTLE, |r| r.phase() == Some(Phase::RollingBack))
        .await
        .unwrap();
    // The page reloads itself every 5 s; a person who opens it now sees the rollback.
    browser.open(&page).await.unwrap();
    let during = browser.visible_text().await.unwrap();
    browser
        .screenshot(&artifacts.join("status-page-rolling-back.png"))
        .await
        .unwrap();
    assert!(
        during.contains(&format!("Newest: {} RollingBack", &bad[..7])),
        "{during}"
    );
    // The failed test and what it said (an http test keeps no log; a Job test's log end is
    // shown open under it, as the page's unit test checks), and the suspects.
    assert!(
        during.contains("test home failed body does not contain \"healthy\": broken"),
        "{during}"
    );
    assert!(during.contains("Suspects"), "{during}");

    stack
        .settled(&bad_release, Phase::RolledBack, SETTLE)
        .await
        .unwrap();
    browser.open(&page).await.unwrap();
    let after = browser.visible_text().await.unwrap();
    browser
        .screenshot(&artifacts.join("status-page-rolled-back.png"))
        .await
        .unwrap();
    assert!(
        after.contains(&format!("Deployed: {} sample app", &good[..7])),
        "{after}"
    );
    assert!(
        after.contains(&format!("Newest: {} RolledBack", &bad[..7])),
        "{after}"
    );
    // The suspects: the commits since the last good release, with their authors.
    assert!(after.contains("Suspects"), "{after}");
    assert!(
        after.contains(&format!("{} bad: breaks the page by", &bad[..7])),
        "{after}"
    );
    // The history: both releases, each by name (statuses and messages link to #name).
    for name in [release_name("main", &good), bad_release.clone()] {
        assert!(after.contains(&name), "{name}\n{after}");
    }
    println!("screenshots in {}", artifacts.display());
}
