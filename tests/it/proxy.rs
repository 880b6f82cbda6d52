//! A TCP proxy that injects faults between a client and a server: cut one
//! connection or all of them, refuse new ones for a while (an outage),
//! stall a connection without closing it (a black-holed flow), slow every
//! connection down, and send the next ones to another server (a restart).
//! Threads and blocking sockets: it sees bytes, not frames, so it works
//! the same with TLS.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One proxied connection.
struct Pair {
    client: TcpStream,
    server: TcpStream,
    alive: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
}

impl Pair {
    fn cut(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

#[derive(Default)]
struct Inner {
    target: Mutex<Option<SocketAddr>>,
    pairs: Mutex<Vec<Pair>>,
    refusing: AtomicBool,
    stop: AtomicBool,
    /// Bytes per second each direction of each connection may carry (0:
    /// no limit).
    rate: AtomicU64,
}

/// A proxy on 127.0.0.1 in front of one server.
pub struct Proxy {
    pub port: u16,
    inner: Arc<Inner>,
}

impl Proxy {
    /// Forwards every connection to `127.0.0.1:target_port`.
    pub fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("proxy address").port();
        let inner = Arc::new(Inner::default());
        *inner.target.lock().unwrap() = Some(SocketAddr::from(([127, 0, 0, 1], target_port)));
        let accepting = inner.clone();
        std::thread::spawn(move || accept_loop(listener, accepting));
        Proxy { port, inner }
    }

    /// A `pareco://` URL of `path` through the proxy.
    pub fn url(&self, path: &str) -> String {
        format!("pareco://127.0.0.1:{}/{path}", self.port)
    }

    /// Caps each direction of each connection at `bytes_per_s`.
    pub fn throttle(&self, bytes_per_s: u64) {
        self.inner.rate.store(bytes_per_s, Ordering::SeqCst);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.pairs.lock().unwrap().iter().filter(|p| p.alive.load(Ordering::SeqCst)).count()
    }

    /// Cuts the oldest open connection; false if there was none.
    pub fn cut_one(&self) -> bool {
        let pairs = self.inner.pairs.lock().unwrap();
        match pairs.iter().find(|p| p.alive.load(Ordering::SeqCst)) {
            Some(pair) => {
                pair.cut();
                true
            }
            None => false,
        }
    }

    /// Cuts every open connection.
    pub fn cut_all(&self) {
        for pair in self.inner.pairs.lock().unwrap().iter() {
            pair.cut();
        }
    }

    /// An outage: while on, every open connection is cut and new ones are
    /// closed as soon as they arrive.
    pub fn outage(&self, on: bool) {
        self.inner.refusing.store(on, Ordering::SeqCst);
        if on {
            self.cut_all();
        }
    }

    /// Stops carrying bytes on the oldest open connection, both ways,
    /// without closing it; false if there was none.
    pub fn stall_one(&self) -> bool {
        let pairs = self.inner.pairs.lock().unwrap();
        match pairs.iter().find(|p| p.alive.load(Ordering::SeqCst) && !p.stalled.load(Ordering::SeqCst)) {
            Some(pair) => {
                pair.stalled.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// New connections go to `127.0.0.1:port` from now on.
    pub fn retarget(&self, port: u16) {
        *self.inner.target.lock().unwrap() = Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.cut_all();
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    while !inner.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => continue,
        };
        if inner.refusing.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let target = *inner.target.lock().unwrap();
        let Some(Ok(server)) = target.map(TcpStream::connect) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nonblocking(false);
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let alive = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) =
            (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone())
        else {
            continue;
        };
        for (from, to) in [(c2, s2), (s3, c3)] {
            let (inner, alive, stalled) = (inner.clone(), alive.clone(), stalled.clone());
            std::thread::spawn(move || pump(from, to, &inner, &alive, &stalled));
        }
        inner.pairs.lock().unwrap().push(Pair { client, server, alive, stalled });
    }
}

/// Copies `from` to `to` until either ends (then the other is closed too).
fn pump(mut from: TcpStream, mut to: TcpStream, inner: &Inner, alive: &AtomicBool, stalled: &AtomicBool) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) && alive.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let rate = inner.rate.load(Ordering::SeqCst);
        if rate > 0 {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
        }
        if !alive.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    alive.store(false, Ordering::SeqCst);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
