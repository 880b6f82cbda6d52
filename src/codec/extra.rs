//! The metadata beyond permission bits and mtime that a session may ask
//! for (protocol 4): owner, group and extended attributes. A session that
//! asks for none of them encodes none of this (PROTOCOL.md §4.6).
//!
//! Everything a peer sends here is checked when it is decoded: names of
//! owners and groups, and extended attributes, within the limits below, so
//! a lying peer can neither make us hold more than those limits nor name
//! an attribute outside the four namespaces.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::bounded::Bounded;

/// Extended attributes of one entry at most.
pub const MAX_XATTRS: usize = 64;
/// Bytes of an attribute's name at most (Linux's `XATTR_NAME_MAX`).
pub const MAX_XATTR_NAME: usize = 255;
/// Bytes of the names and values of one entry's attributes together at
/// most (one value at most as large: Linux's `XATTR_SIZE_MAX`).
pub const MAX_XATTR_BYTES: usize = 64 << 10;
/// Bytes of an owner's or group's name at most.
pub const MAX_ID_NAME: usize = 255;
/// Bytes of [`Xattrs::Digest`].
pub const XATTR_DIGEST_LEN: usize = 32;

/// The namespaces an attribute's name may start with.
pub const XATTR_NAMESPACES: [&[u8]; 4] = [b"user.", b"trusted.", b"security.", b"system."];

/// What a session keeps in sync besides mode and mtime (`--owner`,
/// `--group`, `--numeric-ids`, `--xattrs`), and whether the client runs
/// as root. Sent in the `SessionSpec` only when something is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preserve {
    /// Owners (`--owner`).
    pub owner: bool,
    /// Groups (`--group`).
    pub group: bool,
    /// Owners and groups by number only (`--numeric-ids`): no names travel.
    pub numeric_ids: bool,
    /// Extended attributes (`--xattrs`).
    pub xattrs: bool,
    /// The client runs as root: with a server that does too, attributes of
    /// every namespace travel, else only `user.` ones.
    pub privileged: bool,
}

impl Preserve {
    /// Nothing is set (the client sets `privileged` only when it asks
    /// for something).
    pub fn is_empty(&self) -> bool {
        *self == Preserve::default()
    }
}

/// An entry's owner, group and extended attributes, as far as the session
/// asks for them (`None`: not asked for, or not known).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extra {
    /// The owner.
    pub owner: Option<Id>,
    /// The group.
    pub group: Option<Id>,
    /// The extended attributes.
    pub xattrs: Option<Xattrs>,
}

/// A user or group: its number and, unless `--numeric-ids` or the side
/// that reads it knows no name for it, its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Id {
    /// The uid or gid.
    pub id: u32,
    /// Its name on the side that read it.
    pub name: Option<IdName>,
}

/// The name of a user or group: 1 to [`MAX_ID_NAME`] bytes, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ByteBuf", into = "ByteBuf")]
pub struct IdName(Vec<u8>);

impl IdName {
    /// Checks `name`.
    pub fn new(name: Vec<u8>) -> Result<IdName, String> {
        if name.is_empty() || name.len() > MAX_ID_NAME || name.contains(&0) {
            return Err(format!("a user or group name of {} bytes, or with a NUL", name.len()));
        }
        Ok(IdName(name))
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<ByteBuf> for IdName {
    type Error = String;
    fn try_from(name: ByteBuf) -> Result<IdName, String> {
        IdName::new(name.into_vec())
    }
}

impl From<IdName> for ByteBuf {
    fn from(name: IdName) -> ByteBuf {
        ByteBuf::from(name.0)
    }
}

/// An entry's extended attributes: all of them (what a source lists), or
/// only their digest (what a destination's `Probed` answers with, which is
/// all the comparison needs and bounded whatever the file holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Xattrs {
    /// Every attribute, sorted by name.
    Listed(XattrList),
    /// [`XattrList::digest`] of them ([`XATTR_DIGEST_LEN`] bytes); all
    /// zeros when they are over the limits (it matches no list).
    Digest(XattrDigest),
}

impl Xattrs {
    /// The digest of these attributes.
    pub fn digest(&self) -> [u8; XATTR_DIGEST_LEN] {
        match self {
            Xattrs::Listed(list) => list.digest(),
            Xattrs::Digest(digest) => digest.0,
        }
    }
}

/// A digest of a list of attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ByteBuf", into = "ByteBuf")]
pub struct XattrDigest(pub [u8; XATTR_DIGEST_LEN]);

impl TryFrom<ByteBuf> for XattrDigest {
    type Error = String;
    fn try_from(bytes: ByteBuf) -> Result<XattrDigest, String> {
        let digest =
            bytes[..].try_into().map_err(|_| format!("an attribute digest of {} bytes", bytes.len()))?;
        Ok(XattrDigest(digest))
    }
}

impl From<XattrDigest> for ByteBuf {
    fn from(digest: XattrDigest) -> ByteBuf {
        ByteBuf::from(digest.0.to_vec())
    }
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Its full name, namespace included (`user.comment`).
    pub name: ByteBuf,
    /// Its value.
    pub value: ByteBuf,
}

/// Extended attributes sorted by name, each name once, within
/// [`MAX_XATTRS`], [`MAX_XATTR_NAME`] and [`MAX_XATTR_BYTES`], each name in
/// one of [`XATTR_NAMESPACES`] and without NUL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Bounded<Xattr, MAX_XATTRS>", into = "Vec<Xattr>")]
pub struct XattrList(Vec<Xattr>);

impl XattrList {
    /// Checks `attrs` (sorting them by name first).
    pub fn new(mut attrs: Vec<Xattr>) -> Result<XattrList, String> {
        attrs.sort_by(|a, b| a.name.cmp(&b.name));
        if attrs.len() > MAX_XATTRS {
            return Err(format!("{} extended attributes, over the limit of {MAX_XATTRS}", attrs.len()));
        }
        let bytes: usize = attrs.iter().map(|a| a.name.len() + a.value.len()).sum();
        if bytes > MAX_XATTR_BYTES {
            return Err(format!("extended attributes of {bytes} bytes, over the limit of {MAX_XATTR_BYTES}"));
        }
        for attr in &attrs {
            let name = &attr.name[..];
            let namespaced = XATTR_NAMESPACES.iter().any(|ns| name.starts_with(ns) && name.len() > ns.len());
            if !namespaced || name.len() > MAX_XATTR_NAME || name.contains(&0) {
                return Err(format!("an extended attribute named {:?}", String::from_utf8_lossy(name)));
            }
        }
        if attrs.windows(2).any(|w| w[0].name == w[1].name) {
            return Err("an extended attribute named twice".into());
        }
        Ok(XattrList(attrs))
    }

    /// The attributes, sorted by name.
    pub fn attrs(&self) -> &[Xattr] {
        &self.0
    }

    /// BLAKE3 over each attribute in order: its name's length (u32
    /// big-endian), its name, its value's length (u32 big-endian), its value.
    pub fn digest(&self) -> [u8; XATTR_DIGEST_LEN] {
        let mut hasher = blake3::Hasher::new();
        for attr in &self.0 {
            for part in [&attr.name[..], &attr.value[..]] {
                hasher.update(&(part.len() as u32).to_be_bytes());
                hasher.update(part);
            }
        }
        *hasher.finalize().as_bytes()
    }
}

impl TryFrom<Vec<Xattr>> for XattrList {
    type Error = String;
    fn try_from(attrs: Vec<Xattr>) -> Result<XattrList, String> {
        let sorted = attrs.windows(2).all(|w| w[0].name < w[1].name);
        if !sorted {
            return Err("extended attributes not sorted by name".into());
        }
        XattrList::new(attrs)
    }
}

impl TryFrom<Bounded<Xattr, MAX_XATTRS>> for XattrList {
    type Error = String;
    fn try_from(attrs: Bounded<Xattr, MAX_XATTRS>) -> Result<XattrList, String> {
        XattrList::try_from(attrs.0)
    }
}

impl From<XattrList> for Vec<Xattr> {
    fn from(list: XattrList) -> Vec<Xattr> {
        list.0
    }
}
