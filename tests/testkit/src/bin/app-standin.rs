//! The demo's application: no container runs here, so this HTTP server stands for the deployed
//! app. `GET /{namespace}/health` answers with ConfigMap `web`'s `data.body` in that namespace
//! (see `ship_testkit::app`), so a commit that breaks the ConfigMap breaks the app.

use clap::Parser;

/// Serves the app stand-in on `--addr` against the cluster in `KUBECONFIG` until SIGTERM.
#[derive(Debug, Parser)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8099")]
    addr: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = kube::Client::try_default().await?;
    let app = ship_testkit::app::App::start_on(client, args.addr).await?;
    eprintln!("app stand-in listening on {}", app.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
