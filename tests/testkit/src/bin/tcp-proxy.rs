//! `tcp-proxy TARGET`: forwards every TCP connection on a free loopback port to TARGET
//! (`host:port`) and prints the port it listens on. A process of its own, so that a test can
//! freeze the path between a client and the API server with SIGSTOP (the connections stay
//! open and silent, as behind a hung load balancer) and thaw it with SIGCONT.

use anyhow::Context as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let target = std::env::args().nth(1).context("usage: tcp-proxy HOST:PORT")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    loop {
        let (mut inbound, _) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
