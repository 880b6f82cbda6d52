//! Owners, groups and extended attributes (`--owner`, `--group`,
//! `--numeric-ids`, `--xattrs`): what a role reads of them and how it
//! sets them.
//!
//! Both sides of a session derive the same [`Scope`] from its spec and
//! whether the server runs as root: owners are kept only when the
//! destination may set them (it runs as root; otherwise the client says
//! so once and the files are synced without them); attributes of the
//! `user.` namespace always, those of the others only when both sides run
//! as root. So what the source lists is what the destination can keep,
//! and an unchanged tree compares equal.
//!
//! - `names`: users and groups by name or number.
//! - `access`: the system calls, on a descriptor or on an entry by path,
//!   never following a symlink.

mod access;
mod names;

use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;

pub use access::At;

use crate::codec::extra::{MAX_XATTRS, MAX_XATTR_BYTES, MAX_XATTR_NAME, XATTR_DIGEST_LEN, XATTR_NAMESPACES};
use crate::codec::RelPath;
use crate::codec::{Direction, Extra, SessionSpec, Xattr, XattrDigest, XattrList, Xattrs};
use crate::peer::error::{Error, Result};

/// What of owners, groups and attributes a session keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    /// Owners travel and are set.
    pub owner: bool,
    /// Groups travel and are set (where the destination may).
    pub group: bool,
    /// Owners and groups travel with their names (not `--numeric-ids`).
    pub names: bool,
    /// Extended attributes travel and are set.
    pub xattrs: bool,
    /// Attributes of every namespace, not only `user.`.
    pub all_namespaces: bool,
}

impl Scope {
    /// What a session of `spec` keeps when the server does or does not
    /// run as root (the client's part is in the spec).
    pub fn agreed(spec: &SessionSpec, server_root: bool) -> Scope {
        let asked = spec.preserve;
        let client_root = asked.privileged;
        let destination_root = match spec.direction {
            Direction::Upload => server_root,
            Direction::Download => client_root,
        };
        Scope {
            owner: asked.owner && destination_root,
            group: asked.group,
            names: !asked.numeric_ids,
            xattrs: asked.xattrs,
            all_namespaces: asked.xattrs && client_root && server_root,
        }
    }

    fn is_empty(&self) -> bool {
        !(self.owner || self.group || self.xattrs)
    }

    /// Does attribute `name` belong to a namespace this session keeps?
    fn keeps(&self, name: &[u8]) -> bool {
        self.xattrs && (name.starts_with(b"user.") || self.all_namespaces)
    }
}

/// Whether this process runs as root.
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// One role's reading and setting of owners, groups and attributes: the
/// session's [`Scope`], the names it looked up, and the warnings it gave.
#[derive(Debug, Default)]
pub struct Extras {
    scope: Scope,
    names: names::Names,
    /// Owner or group could not be set somewhere (said once).
    denied_owner: AtomicBool,
    /// Attributes could not be set somewhere (said once).
    denied_xattrs: AtomicBool,
}

impl Extras {
    /// The role's extras for `scope`; `None` when it keeps nothing more
    /// than mode and mtime.
    pub fn new(scope: Scope) -> Option<std::sync::Arc<Extras>> {
        (!scope.is_empty()).then(|| std::sync::Arc::new(Extras { scope, ..Extras::default() }))
    }

    /// The scope.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Reads the owner, group and attributes of `at` as the scope asks:
    /// attributes all listed (a source), or only their digest (a
    /// destination's probe). Attributes over the limits are an error for a
    /// listing, and a digest that matches nothing for a probe.
    pub fn read(&self, at: &At, listed: bool) -> std::result::Result<Extra, String> {
        let scope = self.scope;
        let (uid, gid) = at.owner().map_err(|e| format!("stat: {}", std::io::Error::from(e)))?;
        let mut extra = Extra {
            owner: scope.owner.then(|| self.names.user(uid, scope.names)),
            group: scope.group.then(|| self.names.group(gid, scope.names)),
            xattrs: None,
        };
        if scope.xattrs {
            extra.xattrs = Some(match (self.read_xattrs(at), listed) {
                (Ok(list), true) => Xattrs::Listed(list),
                (Ok(list), false) => Xattrs::Digest(XattrDigest(list.digest())),
                (Err(Errno::RANGE | Errno::TOOBIG), false) => {
                    Xattrs::Digest(XattrDigest([0; XATTR_DIGEST_LEN]))
                }
                (Err(Errno::RANGE | Errno::TOOBIG), true) => {
                    return Err(format!(
                        "extended attributes over the limits ({MAX_XATTRS}, {} KiB together); not synced",
                        MAX_XATTR_BYTES >> 10
                    ))
                }
                (Err(e), _) => return Err(format!("read extended attributes: {}", std::io::Error::from(e))),
            });
        }
        Ok(extra)
    }

    /// The attributes of `at` in the kept namespaces; `RANGE` or `TOOBIG`
    /// when they are over the limits.
    fn read_xattrs(&self, at: &At) -> rustix::io::Result<XattrList> {
        let mut attrs = Vec::new();
        let mut bytes = 0;
        for name in self.kept_names(at)? {
            let value = match at.get(&name, MAX_XATTR_BYTES.saturating_sub(bytes).max(1)) {
                Ok(value) => value,
                // Removed meanwhile.
                Err(Errno::NODATA) => continue,
                Err(e) => return Err(e),
            };
            bytes += name.len() + value.len();
            attrs.push(Xattr { name: name.into(), value: value.into() });
        }
        XattrList::new(attrs).map_err(|_| Errno::TOOBIG)
    }

    /// The names of the attributes of `at` in the kept namespaces (none on
    /// a file system without attributes).
    fn kept_names(&self, at: &At) -> rustix::io::Result<Vec<Vec<u8>>> {
        let list = match at.list(MAX_XATTRS * (MAX_XATTR_NAME + 1)) {
            Ok(list) => list,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(Errno::RANGE) => return Err(Errno::TOOBIG),
            Err(e) => return Err(e),
        };
        let names: Vec<Vec<u8>> = list
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty() && self.scope.keeps(name))
            .filter(|name| XATTR_NAMESPACES.iter().any(|ns| name.starts_with(ns)))
            .map(<[u8]>::to_vec)
            .collect();
        if names.len() > MAX_XATTRS {
            return Err(Errno::TOOBIG);
        }
        Ok(names)
    }

    /// Gives `at` the owner, group and attributes of `extra`, as far as the
    /// scope keeps them and this process may. Owner and group come first
    /// (changing them clears setuid bits and capabilities). What this
    /// process may not set is said once and left; the entry is still
    /// synced. `keep_setid`: a `security.capability` attribute is set too
    /// (like a setuid bit, it is otherwise left out).
    pub fn apply(&self, at: &At, extra: &Extra, rel: &RelPath, keep_setid: bool) -> Result<()> {
        let scope = self.scope;
        let uid = extra.owner.as_ref().filter(|_| scope.owner).map(|id| self.names.local_user(id));
        let gid = extra.group.as_ref().filter(|_| scope.group).map(|id| self.names.local_group(id));
        if uid.is_some() || gid.is_some() {
            if uid == Some(u32::MAX) || gid == Some(u32::MAX) {
                return Err(Error::denied(format!("{rel}: owner or group -1")));
            }
            let (have_uid, have_gid) = at.owner().map_err(|e| Error::from_errno(e, rel, "stat"))?;
            let uid = uid.filter(|&u| u != have_uid);
            let gid = gid.filter(|&g| g != have_gid);
            if uid.is_some() || gid.is_some() {
                match at.chown(uid, gid) {
                    Ok(()) => {}
                    Err(Errno::PERM) => self.once(&self.denied_owner, || {
                        format!(
                            "{rel}: cannot set its owner or group (not permitted); files keep those they get"
                        )
                    }),
                    Err(e) => return Err(Error::from_errno(e, rel, "set owner and group of")),
                }
            }
        }
        if let (true, Some(Xattrs::Listed(want))) = (scope.xattrs, &extra.xattrs) {
            self.apply_xattrs(at, want, rel, keep_setid)?;
        }
        Ok(())
    }

    fn apply_xattrs(&self, at: &At, want: &XattrList, rel: &RelPath, keep_setid: bool) -> Result<()> {
        let failed = |e: Errno, what: &str| -> Result<()> {
            match e {
                Errno::NOTSUP | Errno::PERM | Errno::ACCESS => {
                    self.once(&self.denied_xattrs, || {
                        format!(
                            "{rel}: cannot {what} extended attributes here ({}); the files are synced without them",
                            std::io::Error::from(e)
                        )
                    });
                    Ok(())
                }
                e => Err(Error::from_errno(e, rel, &format!("{what} extended attributes of"))),
            }
        };
        let have = match self.kept_names(at) {
            Ok(names) => names,
            Err(Errno::TOOBIG) => {
                let why = format!("{rel}: more extended attributes than the limit of {MAX_XATTRS}");
                return Err(Error::new(crate::codec::ErrorKind::Limit, why));
            }
            Err(e) => return failed(e, "read"),
        };
        let allowed = |name: &[u8]| self.scope.keeps(name) && (keep_setid || name != b"security.capability");
        for name in have.iter().filter(|n| allowed(n)) {
            if !want.attrs().iter().any(|a| a.name[..] == name[..]) {
                if let Err(e) = at.remove(name) {
                    return failed(e, "remove");
                }
            }
        }
        for attr in want.attrs().iter().filter(|a| allowed(&a.name)) {
            // One byte more than wanted: a longer value does not compare equal.
            let same = at.get(&attr.name, attr.value.len() + 1).is_ok_and(|v| v[..] == attr.value[..]);
            if !same {
                if let Err(e) = at.set(&attr.name, &attr.value) {
                    return failed(e, "set");
                }
            }
        }
        Ok(())
    }

    /// Warns with `message` unless `flag` says it was done already.
    fn once(&self, flag: &AtomicBool, message: impl FnOnce() -> String) {
        if !flag.swap(true, Ordering::Relaxed) {
            tracing::warn!("{}", message());
        }
    }
}
