//! A TCP proxy on 127.0.0.1 that injects faults between a client and a
//! server, for tests of what a transfer survives:
//!
//! - [`Proxy::cut_one`], [`Proxy::cut_all`]: close connections (both
//!   sockets shut down, as a reset or a dead route would end them);
//! - [`Proxy::outage`]: cut every connection and close new ones as soon as
//!   they arrive, until it is over (a link down, a router restarting);
//! - [`Proxy::stall_one`]: stop carrying bytes on a connection, both ways,
//!   without closing it (a black-holed flow: only a timeout finds it);
//! - [`Proxy::cut_busy`], [`Proxy::stall_busy`]: the same, at the moment
//!   the connection carries a request or an answer, which is lost with it:
//!   the client then certainly has a request to send again;
//! - [`Proxy::delay`]: add one-way latency to each direction (a long link:
//!   bytes in flight are not limited by it, as on a real one);
//! - [`Proxy::throttle`]: cap the bytes per second of each direction of
//!   each connection (a slow link, and a transfer long enough to be hit);
//! - [`Proxy::retarget`]: send new connections to another server (the
//!   same server restarted, without its sessions).
//!
//! It sees bytes, not frames, so it works the same with TLS. A test waits
//! for conditions ([`Proxy::open`], [`Proxy::accepted`],
//! [`Proxy::refused`], [`Proxy::carried`]) rather than for time, so that a
//! loaded machine only makes it slower. Threads and blocking sockets: per
//! connection, each direction has a thread reading and a thread writing,
//! joined by a short queue (what lets the delay hold many reads in flight
//! at once).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most bytes one read takes from a socket.
const READ_SIZE: usize = 64 << 10;
/// Reads one direction of a connection holds between its two threads (what
/// a delay keeps in flight; beyond it, the reading side waits).
const QUEUE: usize = 64;
/// How often waiting threads look again (a stalled flow, the listener).
const POLL: Duration = Duration::from_millis(2);
/// How often a throttled flow looks again at the rate.
const PACE: Duration = Duration::from_millis(10);
/// A read of at least this many bytes holds part of a message other than
/// `Ping` and `Pong` (a few dozen bytes each, even over TLS, and sent only
/// on idle connections): a request, or the answer to one.
const BUSY: usize = 1024;

/// A connection that has carried this many bytes is past its handshake:
/// a busy read of it is a request or an answer.
const SETTLED: u64 = 64 << 10;

/// The fault the next busy read of a settled connection makes.
const NOTHING: u8 = 0;
const CUT: u8 = 1;
const STALL: u8 = 2;

/// One proxied connection.
struct Pair {
    client: TcpStream,
    server: TcpStream,
    alive: AtomicBool,
    stalled: AtomicBool,
    /// Bytes it delivered so far, both ways.
    carried: AtomicU64,
}

impl Pair {
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn cut(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

#[derive(Default)]
struct Inner {
    target: Mutex<Option<SocketAddr>>,
    pairs: Mutex<Vec<Arc<Pair>>>,
    refusing: AtomicBool,
    stop: AtomicBool,
    /// Bytes per second each direction of each connection may carry (0:
    /// no limit).
    rate: AtomicU64,
    /// Added one-way latency, in microseconds.
    delay_us: AtomicU64,
    /// Connections forwarded to a server so far.
    accepted: AtomicUsize,
    /// Connections closed at once by an outage so far.
    refused: AtomicUsize,
    /// Bytes delivered so far, both ways, all connections.
    carried: AtomicU64,
    /// [`NOTHING`], or the fault to make at the next read of [`BUSY`]
    /// bytes of a [`SETTLED`] connection, either way (reset to [`NOTHING`]
    /// when made).
    on_busy: AtomicU8,
}

impl Inner {
    /// The oldest open connection (and not stalled, with `fresh`).
    fn oldest(&self, fresh: bool) -> Option<Arc<Pair>> {
        let pairs = self.pairs.lock().unwrap();
        pairs.iter().find(|p| p.is_alive() && !(fresh && p.stalled.load(Ordering::SeqCst))).cloned()
    }
}

/// A proxy on 127.0.0.1 in front of one server: every connection made to
/// [`Proxy::port`] is forwarded to the server's port, and carries what
/// the faults let through. Dropping it cuts every connection.
pub struct Proxy {
    /// The port the proxy listens on (127.0.0.1).
    pub port: u16,
    inner: Arc<Inner>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection
    /// to `127.0.0.1:target_port`, without faults until told.
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

    /// A `pareco://` URL of `path` through the proxy (with TLS, pass
    /// `--tls`: the server's certificate must name 127.0.0.1).
    pub fn url(&self, path: &str) -> String {
        format!("pareco://127.0.0.1:{}/{path}", self.port)
    }

    /// Caps each direction of each connection at `bytes_per_s` (0: no
    /// cap), at once, open connections included. Throttled, reads are cut
    /// to what 1/16 s carries (4 KiB at the least): at a low rate, data
    /// still trickles.
    pub fn throttle(&self, bytes_per_s: u64) {
        self.inner.rate.store(bytes_per_s, Ordering::SeqCst);
    }

    /// Holds every byte for `latency` before passing it on, each direction
    /// of each connection (a round trip takes twice as long more), from
    /// the next read on, open connections included. Bytes keep flowing
    /// meanwhile: only their arrival is later. `Duration::ZERO` ends it.
    pub fn delay(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.inner.delay_us.store(us, Ordering::SeqCst);
    }

    /// Connections open now (stalled ones included).
    pub fn open(&self) -> usize {
        self.inner.pairs.lock().unwrap().iter().filter(|p| p.is_alive()).count()
    }

    /// Connections forwarded to a server so far (not those an outage
    /// closed at once).
    pub fn accepted(&self) -> usize {
        self.inner.accepted.load(Ordering::SeqCst)
    }

    /// Connections an outage closed as soon as they arrived, so far.
    pub fn refused(&self) -> usize {
        self.inner.refused.load(Ordering::SeqCst)
    }

    /// Bytes delivered so far, both ways, over every connection.
    pub fn carried(&self) -> u64 {
        self.inner.carried.load(Ordering::SeqCst)
    }

    /// Cuts the oldest open connection; false if there was none.
    pub fn cut_one(&self) -> bool {
        self.inner.oldest(false).map(|pair| pair.cut()).is_some()
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

    /// Stops carrying bytes on the oldest open connection not yet
    /// stalled, both ways, without closing it (nor noticing that an end
    /// closes it); false if there was none. It stays open until cut.
    pub fn stall_one(&self) -> bool {
        self.inner.oldest(true).map(|pair| pair.stalled.store(true, Ordering::SeqCst)).is_some()
    }

    /// Cuts the first open connection to carry a read of a KiB or more
    /// either way (once it is past its handshake), dropping that read:
    /// part of a request or of an answer, so the client loses a request it
    /// waits for. Waits for that up to `within`; false if no connection
    /// carried such a read meanwhile.
    pub fn cut_busy(&self, within: Duration) -> bool {
        self.when_busy(CUT, within)
    }

    /// Stalls (as [`Proxy::stall_one`] does) the first open connection to
    /// carry a read of a KiB or more either way (once it is past its
    /// handshake), holding that read: the client then waits for an answer
    /// that never comes. Waits for that up to `within`; false if no
    /// connection carried such a read meanwhile.
    pub fn stall_busy(&self, within: Duration) -> bool {
        self.when_busy(STALL, within)
    }

    fn when_busy(&self, fault: u8, within: Duration) -> bool {
        let on_busy = &self.inner.on_busy;
        on_busy.store(fault, Ordering::SeqCst);
        let started = Instant::now();
        while on_busy.load(Ordering::SeqCst) != NOTHING && started.elapsed() < within {
            std::thread::sleep(POLL);
        }
        // Made if a reader took it.
        on_busy.swap(NOTHING, Ordering::SeqCst) == NOTHING
    }

    /// New connections go to `127.0.0.1:port` from now on (open ones stay
    /// with their server).
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
                std::thread::sleep(POLL);
                continue;
            }
            Err(_) => continue,
        };
        if inner.refusing.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            inner.refused.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let target = *inner.target.lock().unwrap();
        let Some(Ok(server)) = target.map(TcpStream::connect) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nonblocking(false);
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let (Ok(c_read), Ok(s_write), Ok(s_read), Ok(c_write)) =
            (client.try_clone(), server.try_clone(), server.try_clone(), client.try_clone())
        else {
            continue;
        };
        let pair = Arc::new(Pair {
            client,
            server,
            alive: AtomicBool::new(true),
            stalled: AtomicBool::new(false),
            carried: AtomicU64::new(0),
        });
        for (from, to) in [(c_read, s_write), (s_read, c_write)] {
            let (queue, queued) = sync_channel(QUEUE);
            let reading = Flow { inner: inner.clone(), pair: pair.clone() };
            let writing = Flow { inner: inner.clone(), pair: pair.clone() };
            std::thread::spawn(move || reading.read(from, queue));
            std::thread::spawn(move || writing.write(queued, to));
        }
        inner.accepted.fetch_add(1, Ordering::SeqCst);
        inner.pairs.lock().unwrap().push(pair);
    }
}

/// Bytes read, and when they may be passed on.
type Chunk = (Instant, Vec<u8>);

/// One direction of one connection.
struct Flow {
    inner: Arc<Inner>,
    pair: Arc<Pair>,
}

impl Flow {
    /// Waits while the connection is stalled; false once it is gone.
    fn wait_while_stalled(&self) -> bool {
        while self.pair.stalled.load(Ordering::SeqCst) && self.pair.is_alive() {
            std::thread::sleep(POLL);
        }
        self.pair.is_alive()
    }

    /// Reads `from` into `queue` until it ends, throttled, each read
    /// stamped with when it may be delivered; makes the fault waiting for
    /// a busy read. Ending drops `queue`: the writing side delivers what it
    /// holds, then closes the connection.
    fn read(&self, mut from: TcpStream, queue: SyncSender<Chunk>) {
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            // Throttled, a read is what 1/16 s carries (4 KiB at least):
            // a slow link still trickles, and busy reads stay busy.
            let rate = self.inner.rate.load(Ordering::SeqCst);
            let most = if rate == 0 { READ_SIZE } else { (rate as usize / 16).clamp(4 * BUSY, READ_SIZE) };
            let n = match from.read(&mut buf[..most]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let settled = self.pair.carried.load(Ordering::SeqCst) >= SETTLED;
            if n >= BUSY && settled && !self.pair.stalled.load(Ordering::SeqCst) {
                match self.inner.on_busy.swap(NOTHING, Ordering::SeqCst) {
                    CUT => {
                        self.pair.cut();
                        break;
                    }
                    STALL => self.pair.stalled.store(true, Ordering::SeqCst),
                    _ => {}
                }
            }
            if !self.wait_while_stalled() {
                break;
            }
            if !self.pace(n) {
                break;
            }
            let due = Instant::now() + Duration::from_micros(self.inner.delay_us.load(Ordering::SeqCst));
            if queue.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    }

    /// Waits as long as `n` bytes take at the throttle's rate, looking
    /// again at the rate as it goes (a new one applies at once); false if
    /// the connection is gone meanwhile.
    fn pace(&self, n: usize) -> bool {
        let mut owed = n as f64;
        let mut since = Instant::now();
        while self.pair.is_alive() {
            let rate = self.inner.rate.load(Ordering::SeqCst) as f64;
            let now = Instant::now();
            owed -= now.duration_since(since).as_secs_f64() * rate;
            since = now;
            if rate == 0.0 || owed <= 0.0 {
                return true;
            }
            std::thread::sleep(Duration::from_secs_f64(owed / rate).min(PACE));
        }
        false
    }

    /// Delivers what `queued` holds to `to`, each read once it is due,
    /// until the reading side ends or the connection is cut; then closes
    /// the connection (which ends the other direction too).
    fn write(&self, queued: Receiver<Chunk>, mut to: TcpStream) {
        for (due, bytes) in queued.iter() {
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            if !self.wait_while_stalled() || to.write_all(&bytes).is_err() {
                break;
            }
            self.inner.carried.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            self.pair.carried.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        }
        self.pair.cut();
    }
}
