//! [`FaultProxy`]: a loopback TCP proxy that can delay, drop or blackhole.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::TestkitError;

/// What the proxy does with traffic; switch with [`FaultProxy::set_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultMode {
    /// Forward bytes as they come.
    Pass,
    /// Forward every chunk after this delay.
    Delay(Duration),
    /// New connections wait this long before the proxy connects them to
    /// the target (a slow handshake); established ones pass.
    DelayConnect(Duration),
    /// Close every open connection, and new ones as they arrive.
    Drop,
    /// Stop reading and writing: hold bytes, never answer, keep sockets open.
    Blackhole,
}

/// A TCP proxy on 127.0.0.1 in front of `target`. Dropping it closes every
/// connection it holds.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<FaultMode>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy in [`FaultMode::Pass`].
    pub async fn start(target: SocketAddr) -> Result<FaultProxy, TestkitError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(TestkitError::io("binding the proxy"))?;
        let addr = listener
            .local_addr()
            .map_err(TestkitError::io("binding the proxy"))?;
        let (mode, rx) = watch::channel(FaultMode::Pass);
        let acceptor = tokio::spawn(accept_loop(listener, target, rx));
        Ok(FaultProxy {
            addr,
            mode,
            acceptor,
        })
    }

    /// The proxy's own address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://` URL of the proxy (for proxying Redis).
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Switches the mode for open and new connections.
    pub fn set_mode(&self, mode: FaultMode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> FaultMode {
        *self.mode.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.mode.send_replace(FaultMode::Drop);
        self.acceptor.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<FaultMode>) {
    while let Ok((client, _)) = listener.accept().await {
        if *mode.borrow() == FaultMode::Drop {
            drop(client);
            continue;
        }
        tokio::spawn(serve(client, target, mode.clone()));
    }
}

async fn serve(client: TcpStream, target: SocketAddr, mode: watch::Receiver<FaultMode>) {
    let delay = match *mode.borrow() {
        FaultMode::DelayConnect(d) => Some(d),
        _ => None,
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    // When either direction ends, both sockets are dropped.
    tokio::select! {
        _ = pump(cr, uw, mode.clone()) => {}
        _ = pump(ur, cw, mode) => {}
    }
}

/// Waits until the mode lets bytes through; false when the connection must close.
async fn gate(mode: &mut watch::Receiver<FaultMode>) -> bool {
    loop {
        let current = *mode.borrow_and_update();
        match current {
            FaultMode::Pass | FaultMode::DelayConnect(_) => return true,
            FaultMode::Delay(d) => {
                tokio::time::sleep(d).await;
                return true;
            }
            FaultMode::Drop => return false,
            FaultMode::Blackhole => {
                if mode.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<FaultMode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            r = from.read(&mut buf) => r,
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == FaultMode::Drop { return; }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !gate(&mut mode).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
