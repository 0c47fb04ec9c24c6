//! A TCP proxy between dapsync and a real database server that cuts every connection through it
//! once a number of bytes has gone from the client to the server: the database going away in the
//! middle of a load (a restart, a failover, a network cut). New connections work again after a cut.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    /// Bytes the clients may still send before every connection is cut; `None`: not armed.
    budget: Mutex<Option<u64>>,
    /// Counts the cuts; connections end when it moves.
    cuts: watch::Sender<u64>,
}

impl CutProxy {
    /// Listens on a free local port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            budget: Mutex::new(None),
            cuts: watch::channel(0).0,
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = accepting.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, shared).await;
                    }
                });
            }
        });
        Self { addr, shared, task }
    }

    /// The port to connect to instead of the server's.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Cuts every connection once clients have sent `bytes` more bytes.
    pub fn cut_after(&self, bytes: u64) {
        *self.shared.budget.lock().unwrap() = Some(bytes);
    }

    /// Disarms the cut, if it has not happened.
    pub fn disarm(&self) {
        *self.shared.budget.lock().unwrap() = None;
    }

    /// How many times the connections were cut.
    pub fn cuts(&self) -> u64 {
        *self.shared.cuts.borrow()
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.cuts.send_modify(|n| *n += 1);
    }
}

impl Shared {
    /// Takes `n` bytes from the budget; true when they exhaust it (the cut happens).
    fn spend(&self, n: usize) -> bool {
        let mut budget = self.budget.lock().unwrap();
        match budget.as_mut() {
            Some(left) if *left <= n as u64 => {
                *budget = None;
                self.cuts.send_modify(|n| *n += 1);
                true
            }
            Some(left) => {
                *left -= n as u64;
                false
            }
            None => false,
        }
    }
}

async fn forward(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let mut cut = shared.cuts.subscribe();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buffer = vec![0u8; 16 << 10];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if shared.spend(n) || server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buffer = vec![0u8; 16 << 10];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either side ending, or a cut, drops both sockets.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
        _ = cut.changed() => {}
    }
}
