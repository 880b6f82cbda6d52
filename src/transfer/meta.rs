//! When the destination's metadata already is what the source's asks for.
//!
//! Mode and mtime must be equal. Owner and group (when the session keeps
//! them) match by name when both sides sent one and they agree, else by
//! number: a name the destination does not know was set by number, so an
//! equal number is what a sync leaves (rsync's rule). Attributes match
//! when the digest of the source's list equals the destination's.

use crate::codec::{Extra, Id, Meta, Xattrs};

/// Does `have` (the destination's) already give what `want` (the
/// source's) asks for?
pub(super) fn same_meta(have: &Meta, want: &Meta) -> bool {
    have.mode == want.mode
        && have.mtime == want.mtime
        && same_extra(have.extra.as_deref(), want.extra.as_deref())
}

/// Do the owner, group and attributes `want` asks for match `have`?
pub(super) fn same_extra(have: Option<&Extra>, want: Option<&Extra>) -> bool {
    let Some(want) = want else { return true };
    let Some(have) = have else { return false };
    same_id(have.owner.as_ref(), want.owner.as_ref())
        && same_id(have.group.as_ref(), want.group.as_ref())
        && same_xattrs(have.xattrs.as_ref(), want.xattrs.as_ref())
}

fn same_id(have: Option<&Id>, want: Option<&Id>) -> bool {
    match (have, want) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(have), Some(want)) => match (&have.name, &want.name) {
            (Some(a), Some(b)) if a == b => true,
            _ => have.id == want.id,
        },
    }
}

fn same_xattrs(have: Option<&Xattrs>, want: Option<&Xattrs>) -> bool {
    match (have, want) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(have), Some(want)) => have.digest() == want.digest(),
    }
}
