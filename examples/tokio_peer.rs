//! A tokio echo server on a current-thread runtime: the async-runtime peer to
//! measure echoloop against (one thread each, so the comparison is fair).
//! Prints `tcp=ADDR udp=ADDR` on stderr (a UDP echo on the same port, one
//! `recv_from` and `send_to` per datagram). Not part of echoloop: the reactor
//! is the point.
//!
//! ```text
//! cargo run --release --example tokio_peer -- 127.0.0.1:0
//! ```

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn serve_udp(socket: UdpSocket) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Ok((n, from)) = socket.recv_from(&mut buf).await {
            // An unreachable sender concerns that datagram only.
            let _ = socket.send_to(&buf[..n], from).await;
        }
    }
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(&addr).await?;
        let tcp = listener.local_addr()?;
        let udp = UdpSocket::bind(tcp).await?;
        eprintln!("tcp={tcp} udp={}", udp.local_addr()?);
        tokio::spawn(serve_udp(udp));
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream));
        }
    })
}
