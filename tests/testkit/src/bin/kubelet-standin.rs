//! Runs the kubelet stand-in against the cluster in `KUBECONFIG` until SIGTERM.

use clap::Parser;

/// A kubelet stand-in for tests: registers a Node and makes its Pods Ready or finished.
#[derive(Debug, Parser)]
struct Args {
    /// Name of the Node to register.
    #[arg(long, default_value = "ship-standin")]
    node_name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args = Args::parse();
    let client = kube::Client::try_default().await?;
    tokio::select! {
        result = ship_testkit::kubelet::run(client, args.node_name) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
