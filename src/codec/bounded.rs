//! Lists refused while they are decoded once they hold more than their
//! bound: the lists a request carries ([`MAX_LIST`]) and the extended
//! attributes of an entry ([`super::extra::MAX_XATTRS`]). A 1 MiB header
//! can encode some 250 000 paths of one byte, which would take 60 times
//! that in memory before any later check saw them.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

/// Items in one list of a request, at most (`Probe`, `HashFiles`,
/// `ReadFiles`, `CopyOld`, `PutFiles`, `Apply`).
pub const MAX_LIST: usize = 4096;

/// Deserializes a request's list of at most [`MAX_LIST`] items.
pub(super) fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Bounded::<T, MAX_LIST>::deserialize(deserializer).map(|bounded| bounded.0)
}

/// A list of at most `N` items: a longer one is an error before its items
/// are decoded (MessagePack gives the length first), and room for more is
/// never allocated.
pub struct Bounded<T, const N: usize>(pub Vec<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Bounded<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(Items::<T, N>(PhantomData)).map(Bounded)
    }
}

struct Items<T, const N: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Items<T, N> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {N} items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let announced = seq.size_hint().unwrap_or(0);
        if announced > N {
            return Err(A::Error::invalid_length(announced, &self));
        }
        let mut items = Vec::with_capacity(announced);
        while let Some(item) = seq.next_element()? {
            if items.len() == N {
                return Err(A::Error::invalid_length(N + 1, &self));
            }
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    use super::*;
    use crate::codec::{CodecError, FrameCodec, Message, Packet, RelPath};

    fn decoded(msg: Message) -> Result<Message, CodecError> {
        let head = Packet::new(7, msg).encode_head().unwrap();
        let mut codec = FrameCodec::new(0);
        Ok(codec.decode(&mut BytesMut::from(&head[..]))?.expect("a whole frame").msg)
    }

    #[test]
    fn a_request_list_of_more_than_max_list_items_is_refused_while_decoded() {
        let probe = |n| Message::Probe { paths: vec![RelPath::new("a").unwrap(); n] };
        assert_eq!(decoded(probe(MAX_LIST)).unwrap(), probe(MAX_LIST));
        let refused = decoded(probe(MAX_LIST + 1)).unwrap_err().to_string();
        assert!(refused.contains("at most 4096"), "{refused}");
        for msg in [
            Message::HashFiles { files: vec![(RelPath::new("a").unwrap(), 1); MAX_LIST + 1] },
            Message::ReadFiles { files: vec![(RelPath::new("a").unwrap(), 1); MAX_LIST + 1] },
            Message::CopyOld { handle: 1, ranges: vec![(0, 1); MAX_LIST + 1] },
        ] {
            assert!(decoded(msg).is_err());
        }
    }

    #[test]
    fn an_entry_with_more_attributes_than_it_may_have_is_refused_at_the_length() {
        use crate::codec::{Xattr, Xattrs};
        use serde_bytes::ByteBuf;
        let attr =
            |i: usize| Xattr { name: ByteBuf::from(format!("user.a{i:03}")), value: ByteBuf::from(vec![1]) };
        let listed = |n: usize| {
            let list: Vec<Xattr> = (0..n).map(attr).collect();
            rmp_serde::to_vec(&std::collections::BTreeMap::from([("Listed", list)])).unwrap()
        };
        assert!(rmp_serde::from_slice::<Xattrs>(&listed(64)).is_ok());
        let refused = rmp_serde::from_slice::<Xattrs>(&listed(65)).unwrap_err().to_string();
        assert!(refused.contains("at most 64 items"), "{refused}");
    }

    #[test]
    fn a_list_costs_its_items_in_memory() {
        let files = Message::HashFiles { files: vec![(RelPath::new("a").unwrap(), 1); MAX_LIST] };
        // 4096 entries of some 7 bytes on the wire each hold 64 bytes or
        // more each in memory.
        assert!(files.list_bytes() >= 64 * MAX_LIST as u64, "{}", files.list_bytes());
        assert_eq!(Message::Walk.list_bytes(), 0);
    }
}
