//! The client's way in: the `pareco://` address, and connecting the N
//! connections of a new session.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::codec::{ErrorKind, RelPath, SessionSpec};

use super::auth::Key;
use super::autotune::{Pace, Tuner};
use super::conn::{self, BoxIo, Counted, Reader, Writer};
use super::handshake::{self, Intent, Welcome};
use super::pace::Pacer;
use super::pool::{LinkSettings, Pool};
use super::redial::{Dial, Redial};
use super::tls::Connector;
use super::SessionError;

/// The port a server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 4650;
/// How long a client asks again for a tree that is busy, or a server busy
/// opening other sessions.
const BUSY_RETRY: Duration = Duration::from_secs(10);
/// Time allowed to connect and finish the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A remote tree: `pareco://HOST[:PORT]/PATH` (`pareco+tls://` for TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port; [`DEFAULT_PORT`] when the address gives none.
    pub port: u16,
    /// The tree on the server, relative to the server's root.
    pub path: RelPath,
    /// The address is a `pareco+tls://` one.
    pub tls: bool,
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "pareco+tls" } else { "pareco" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "{scheme}://{host}:{}/{}", self.port, String::from_utf8_lossy(self.path.as_bytes()))
    }
}

impl FromStr for Remote {
    type Err = String;

    fn from_str(text: &str) -> Result<Remote, String> {
        let bad =
            |why: &str| format!("bad remote address {text:?}: {why} (expected pareco://HOST[:PORT]/PATH)");
        let (tls, rest) = if let Some(rest) = text.strip_prefix("pareco://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("pareco+tls://") {
            (true, rest)
        } else {
            return Err(bad("it must start with pareco:// or pareco+tls://"));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '[' in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        let path = RelPath::from_user(path).map_err(|e| bad(&e.to_string()))?;
        Ok(Remote { host: host.to_owned(), port, path, tls })
    }
}

/// How a client connects. (Its `Debug` shows no token.)
#[derive(Clone)]
pub struct ClientConfig {
    /// Connections of the session, the opening one included (at least 1).
    pub connections: usize,
    /// `-n auto`: start with a few and add more while goodput rises, up
    /// to `connections` and what the server takes (needs reconnection).
    pub auto: bool,
    /// The token shared with the server, if any.
    pub token: Option<String>,
    /// How to speak TLS to the server; `None` for plain TCP.
    pub tls: Option<Connector>,
    /// How long a session may have no connection at all while the client
    /// keeps trying to join it again; zero: lost connections are not
    /// replaced.
    pub reconnect_timeout: Duration,
    /// A connection with requests in flight on which nothing arrived for
    /// this long is lost (and replaced).
    pub io_timeout: Duration,
    /// What the client sends goes within this pacer's rate (`--bwlimit`,
    /// lowered to the server's): one pacer for every connection and every
    /// session of a run, so that none starts with a fresh budget.
    pub pacer: Arc<Pacer>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("connections", &self.connections)
            .field("auto", &self.auto)
            .field("token", &self.token.as_ref().map(|_| "(redacted)"))
            .field("tls", &self.tls)
            .field("reconnect_timeout", &self.reconnect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("pacer", &self.pacer)
            .finish()
    }
}

/// Opens a session for `spec` on `remote` and joins `connections - 1` more
/// connections to it; returns them as a running [`Pool`].
pub async fn connect(
    remote: &Remote,
    spec: SessionSpec,
    config: &ClientConfig,
) -> Result<Pool, SessionError> {
    let key = config.token.as_deref().map(Key::from_token);
    let wire = Arc::new(AtomicU64::new(0));
    let chunk = spec.chunk_size as usize;
    // A server takes at most this many connections for chunks this large.
    let connections = config.connections.max(1).min(super::server::connections_for(spec.chunk_size));
    if connections < config.connections && !config.auto {
        tracing::warn!(
            "{} connections of {} MiB chunks would be more than a server takes; using {connections}",
            config.connections,
            spec.chunk_size >> 20
        );
    }
    let opening = std::time::Instant::now();
    let (first, welcome) = open(remote, config, key.as_ref(), spec, &wire).await?;
    let opened_in = opening.elapsed();
    tracing::debug!("the session opened in {} ms", opened_in.as_millis());
    if let Some(rate) = config.pacer.rate() {
        tracing::info!("sending within {rate} bytes/s");
    }
    // The server says how many it takes: more would only take the place
    // of one another.
    let most = (welcome.max_connections as usize).max(1);
    if connections > most && !config.auto {
        tracing::warn!("the server takes at most {most} connections for this session; using {most}");
    }
    let connections = connections.min(most).min(paced_connections(config, &welcome, chunk));
    let tuner = config.auto.then(|| Tuner::new(connections, Pace::for_open(opened_in)));
    let connections = tuner.as_ref().map_or(connections, Tuner::connections);
    let join = Intent::Join { session: welcome.session, secret: welcome.secret };
    let joins = (1..connections).map(|_| connect_one(remote, config, key.as_ref(), join.clone(), &wire));
    let mut conns = vec![first];
    for joined in futures::future::join_all(joins).await {
        match joined {
            Ok((conn, _)) => conns.push(conn),
            // The session is there: with reconnection, the pool makes the
            // connections that are missing.
            Err(e) if !config.reconnect_timeout.is_zero() && !refused(&e) => {
                tracing::debug!("joining the session failed: {e}; trying again later");
            }
            Err(e) => return Err(e),
        }
    }
    let redial = (!config.reconnect_timeout.is_zero()).then(|| {
        let (remote, config, wire) = (remote.clone(), config.clone(), wire.clone());
        let reconnect_timeout = config.reconnect_timeout;
        let dial: Dial = Arc::new(move || {
            let (remote, config, wire, join) = (remote.clone(), config.clone(), wire.clone(), join.clone());
            Box::pin(async move {
                let key = config.token.as_deref().map(Key::from_token);
                connect_one(&remote, &config, key.as_ref(), join, &wire).await.map(|(conn, _)| conn)
            })
        });
        Redial { dial, reconnect_timeout }
    });
    let settings = LinkSettings {
        // Room per connection for two chunks and then some small requests.
        budget: (2 * chunk).max(4 << 20),
        io_timeout: config.io_timeout,
        // Often enough that neither the server's idle timeout nor ours
        // passes on an idle connection.
        ping_every: (welcome.idle_timeout.min(config.io_timeout) / 3).max(Duration::from_millis(10)),
    };
    Ok(Pool::start(conns, connections, tuner, settings, wire, redial)
        .with_server_privileged(welcome.privileged))
}

/// Connections worth keeping under the session's bandwidth limit: a
/// paced connection moves `rate / N`, and one chunk on each of them must
/// take well under the I/O timeout and the server's idle timeout (a frame
/// counts as arrived only when it is whole), or busy connections would
/// look dead. Says so when it lowers `-n`, or when even one connection
/// is too slow for a chunk.
fn paced_connections(config: &ClientConfig, welcome: &Welcome, chunk: usize) -> usize {
    let Some(rate) = config.pacer.rate() else { return usize::MAX };
    let within = config.io_timeout.min(welcome.idle_timeout / 2) / 3;
    let most = (rate as f64 * within.as_secs_f64() / chunk as f64) as usize;
    if most == 0 {
        tracing::warn!(
            "at {rate} bytes/s one chunk of {chunk} bytes takes longer than a third of the I/O timeout \
             ({}): use a smaller -c or a longer --io-timeout",
            humantime::format_duration(config.io_timeout)
        );
    } else if most < config.connections {
        tracing::info!("at {rate} bytes/s, {most} connection(s) suffice; using no more");
    }
    most.max(1)
}

/// Opens the session. A tree another session is writing into may be
/// free a moment later (that session's client was just killed, and the
/// server has not seen its connections go yet): a busy tree is asked for
/// again for up to [`BUSY_RETRY`].
async fn open(
    remote: &Remote,
    config: &ClientConfig,
    key: Option<&Key>,
    spec: SessionSpec,
    wire: &Arc<AtomicU64>,
) -> Result<((Reader, Writer), Welcome), SessionError> {
    let started = std::time::Instant::now();
    loop {
        match connect_one(remote, config, key, Intent::Open(spec.clone()), wire).await {
            Err(SessionError::Refused(e)) if e.kind == ErrorKind::Busy && started.elapsed() < BUSY_RETRY => {
                tracing::debug!("{e}; asking again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Did the server refuse (rather than the network fail)?
fn refused(e: &SessionError) -> bool {
    matches!(e, SessionError::Refused(_))
}

async fn connect_one(
    remote: &Remote,
    config: &ClientConfig,
    key: Option<&Key>,
    intent: Intent,
    wire: &Arc<AtomicU64>,
) -> Result<((Reader, Writer), Welcome), SessionError> {
    let addr = format!("{}:{}", remote.host, remote.port);
    let work = async {
        let tcp = TcpStream::connect((remote.host.as_str(), remote.port))
            .await
            .map_err(|source| SessionError::Connect { addr: addr.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        let counted = Counted::new(tcp, wire.clone());
        let (io, binding): (BoxIo, Vec<u8>) = match &config.tls {
            Some(connector) => {
                let tls = connector
                    .connect(counted)
                    .await
                    .map_err(|source| SessionError::TlsHandshake { addr: addr.clone(), source })?;
                let binding = super::tls::binding(tls.get_ref().1)?;
                (Box::new(tls), binding)
            }
            None => (Box::new(counted), Vec::new()),
        };
        let (mut reader, mut writer) = conn::split(io);
        let welcome = handshake::client(&mut reader, &mut writer, key, intent, &binding).await.map_err(
            |e| match e {
                SessionError::Foreign(what) if config.tls.is_none() && what.starts_with("a TLS") => {
                    SessionError::ExpectsTls { addr: addr.clone() }
                }
                other => other,
            },
        )?;
        reader.open(welcome.max_payload as usize);
        config.pacer.agree(welcome.bwlimit);
        writer.pace(config.pacer.clone());
        Ok(((reader, writer), welcome))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| SessionError::Timeout { addr: addr.clone(), after: CONNECT_TIMEOUT })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_not_in_debug_output() {
        let config = ClientConfig {
            connections: 2,
            auto: false,
            token: Some("s3cret-t0ken".into()),
            tls: None,
            reconnect_timeout: Duration::ZERO,
            io_timeout: Duration::from_secs(30),
            pacer: Pacer::new(None),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-t0ken") && shown.contains("redacted"), "{shown}");
        let server = crate::session::ServerConfig {
            root: "/srv".into(),
            token: Some("s3cret-t0ken".into()),
            session_timeout: Duration::from_secs(1),
            max_sessions: 1,
            max_connections: 1,
            tls: None,
            keep_setid: false,
            cache: None,
            bwlimit: None,
        };
        let shown = format!("{server:?}");
        assert!(!shown.contains("s3cret-t0ken") && shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn parses_addresses() {
        let r: Remote = "pareco://example.org:5000/data/db".parse().unwrap();
        assert_eq!((r.host.as_str(), r.port, r.tls), ("example.org", 5000, false));
        assert_eq!(r.path, RelPath::new("data/db").unwrap());
        let r: Remote = "pareco+tls://[::1]/x".parse().unwrap();
        assert_eq!((r.host.as_str(), r.port, r.tls), ("::1", DEFAULT_PORT, true));
        let r: Remote = "pareco://h".parse().unwrap();
        assert!(r.path.is_root());
        for bad in [
            "http://h/x",
            "pareco://:80/x",
            "pareco://h:0/x",
            "pareco://h:99999/",
            "pareco://[::1/x",
            "pareco://h/../x",
        ] {
            assert!(bad.parse::<Remote>().is_err(), "{bad}");
        }
    }
}
