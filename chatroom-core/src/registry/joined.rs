//! The rooms one session is in, as the registry keeps them.

/// The folded names of the rooms a session joined, in sorted order.
///
/// A sorted vector sized to its contents, not a `BTreeSet`: a set's first
/// insertion allocates a whole node of eleven slots (272 bytes) for what is
/// nearly always one room or a few, and every connection holds one of these
/// for as long as it lasts. Lookups are a binary search over at most
/// `max_rooms_per_client` names.
#[derive(Debug, Default)]
pub(super) struct Joined(Vec<String>);

impl Joined {
    pub(super) fn contains(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds `key`; false when it was there already.
    pub(super) fn insert(&mut self, key: String) -> bool {
        match self.find(&key) {
            Ok(_) => false,
            Err(at) => {
                // One slot at a time: a session joins rarely, and a
                // doubled vector would mostly hold empty slots.
                self.0.reserve_exact(1);
                self.0.insert(at, key);
                true
            }
        }
    }

    /// Removes `key`; false when it was not there.
    pub(super) fn remove(&mut self, key: &str) -> bool {
        match self.find(key) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// The names, in sorted order.
    pub(super) fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|k| k.as_str().cmp(key))
    }
}

impl<'a> IntoIterator for &'a Joined {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::Joined;

    proptest! {
        /// Any sequence of joins and leaves leaves the same names, in the
        /// same order, as the `BTreeSet` this replaced, and answers each
        /// step alike.
        #[test]
        fn behaves_as_a_sorted_set(steps in prop::collection::vec((any::<bool>(), 0u8..8), 0..64)) {
            let mut joined = Joined::default();
            let mut set = BTreeSet::new();
            for (join, n) in steps {
                let key = format!("room-{n}");
                if join {
                    prop_assert_eq!(joined.insert(key.clone()), set.insert(key));
                } else {
                    prop_assert_eq!(joined.remove(&key), set.remove(&key));
                }
                prop_assert_eq!(joined.len(), set.len());
                prop_assert!(joined.iter().eq(set.iter()));
                prop_assert_eq!(joined.contains("room-3"), set.contains("room-3"));
            }
        }
    }

    /// A session in one room holds one slot, not a vector's first four.
    #[test]
    fn one_room_takes_one_slot() {
        let mut joined = Joined::default();
        assert_eq!(joined.0.capacity(), 0);
        assert!(joined.insert("lobby".to_owned()));
        assert!(!joined.insert("lobby".to_owned()));
        assert_eq!(joined.0.capacity(), 1);
        assert!(joined.insert("general".to_owned()));
        assert_eq!(joined.0.capacity(), 2);
    }
}
