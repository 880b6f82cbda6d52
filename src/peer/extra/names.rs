//! Users and groups by name, the way rsync maps them: a name this side
//! knows wins, otherwise the number travels as it is. Lookups go through
//! the system's user database (`getpwuid_r` and the like, by way of `nix`)
//! once per id or name and role: a tree of a million files has a handful
//! of owners.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use nix::unistd::{Gid, Group, Uid, User};

use crate::codec::{Id, IdName};

/// Users or groups, looked up once each.
#[derive(Debug, Default)]
pub(super) struct Names {
    users: Cache<u32, Option<IdName>>,
    groups: Cache<u32, Option<IdName>>,
    user_ids: Cache<IdName, Option<u32>>,
    group_ids: Cache<IdName, Option<u32>>,
}

impl Names {
    /// Owner `uid` as it travels: with its name when `named` and one is known.
    pub(super) fn user(&self, uid: u32, named: bool) -> Id {
        let name = named.then(|| self.users.get(uid, user_name)).flatten();
        Id { id: uid, name }
    }

    /// Group `gid` as it travels: with its name when `named` and one is known.
    pub(super) fn group(&self, gid: u32, named: bool) -> Id {
        let name = named.then(|| self.groups.get(gid, group_name)).flatten();
        Id { id: gid, name }
    }

    /// The uid here of the owner `id` from the other side: that of its
    /// name when this side knows the name, else its number.
    pub(super) fn local_user(&self, id: &Id) -> u32 {
        id.name.as_ref().and_then(|name| self.user_ids.get(name.clone(), user_id)).unwrap_or(id.id)
    }

    /// The gid here of the group `id` from the other side, as `local_user`.
    pub(super) fn local_group(&self, id: &Id) -> u32 {
        id.name.as_ref().and_then(|name| self.group_ids.get(name.clone(), group_id)).unwrap_or(id.id)
    }
}

#[derive(Debug)]
struct Cache<K, V>(Mutex<HashMap<K, V>>);

impl<K, V> Default for Cache<K, V> {
    fn default() -> Self {
        Cache(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    fn get(&self, key: K, look_up: fn(&K) -> V) -> V {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_insert_with_key(look_up).clone()
    }
}

// A failed lookup (the user database cannot be read) counts as no name:
// the number then travels, which is what rsync does too.

fn user_name(uid: &u32) -> Option<IdName> {
    let user = User::from_uid(Uid::from_raw(*uid)).ok().flatten()?;
    IdName::new(user.name.into_bytes()).ok()
}

fn group_name(gid: &u32) -> Option<IdName> {
    let group = Group::from_gid(Gid::from_raw(*gid)).ok().flatten()?;
    IdName::new(group.name.into_bytes()).ok()
}

fn user_id(name: &IdName) -> Option<u32> {
    let name = std::str::from_utf8(name.as_bytes()).ok()?;
    User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
}

fn group_id(name: &IdName) -> Option<u32> {
    let name = std::str::from_utf8(name.as_bytes()).ok()?;
    Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw())
}
