//! The writes that are durable in the write-ahead log but not yet applied to redb.
//!
//! [`RedbBackend`](crate::RedbBackend) acknowledges a batch once its log record is on disk and
//! the batch is in a new [`Overlay`] published to readers; a background thread applies the
//! overlay to redb in large transactions later. Readers see "overlay over redb": a key the
//! overlay holds is answered from it (a tombstone hides the key), any other key from redb.
//!
//! An overlay is immutable once published. Its map is a persistent B-tree (`imbl::OrdMap`), so
//! the writer derives the next version from the last one by inserting the batch's keys (sharing
//! every untouched node) and publishing costs a pointer swap, not a copy of the map.
//!
//! Consistency rests on two revisions each overlay carries: `revision`, the latest committed
//! revision, which reads report; and `applied`, a revision redb is known to hold durably, at or
//! below which entries may have been pruned from the map. A read is consistent at `revision` if
//! its redb snapshot sits at a revision `r` with `applied <= r <= revision`: every change above
//! `r` is then in the map, and redb holds nothing newer than the overlay
//! ([`Overlay::pairs_with`]).

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::{Record, Revision};

/// One key's latest change that redb may not have yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    pub create_revision: Revision,
    /// The revision of the change (for a delete, the delete's revision).
    pub mod_revision: Revision,
    /// `None`: the key was deleted.
    pub value: Option<Bytes>,
}

impl Pending {
    pub fn record(&self, key: &str) -> Option<Record> {
        self.value.as_ref().map(|value| Record {
            key: key.to_owned(),
            value: value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        })
    }
}

/// One published version of the changes not yet pruned after their application to redb.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overlay {
    pub revision: Revision,
    pub applied: Revision,
    pub changes: imbl::OrdMap<Arc<str>, Pending>,
    /// Bytes of values held, to bound the overlay's memory.
    pub value_bytes: usize,
}

impl Overlay {
    /// An empty overlay over a redb that holds everything up to `revision`.
    pub fn empty(revision: Revision) -> Self {
        Self {
            revision,
            applied: revision,
            changes: imbl::OrdMap::new(),
            value_bytes: 0,
        }
    }

    /// Whether a redb snapshot at `redb_revision` completes this overlay into a consistent
    /// view at [`Overlay::revision`].
    pub fn pairs_with(&self, redb_revision: Revision) -> bool {
        self.applied <= redb_revision && redb_revision <= self.revision
    }

    pub fn insert(&mut self, key: &str, pending: Pending) {
        let added = pending.value.as_ref().map_or(0, Bytes::len);
        if let Some(old) = self.changes.insert(Arc::from(key), pending) {
            self.value_bytes -= old.value.as_ref().map_or(0, Bytes::len);
        }
        self.value_bytes += added;
    }

    /// Drops the entries redb now holds durably: those not changed after `applied`.
    pub fn prune(&mut self, applied: Revision) {
        if applied <= self.applied {
            return;
        }
        let stale: Vec<Arc<str>> = self
            .changes
            .iter()
            .filter(|(_, pending)| pending.mod_revision <= applied)
            .map(|(key, _)| Arc::clone(key))
            .collect();
        let mut freed = 0;
        for key in stale {
            if let Some(pending) = self.changes.remove(&key) {
                freed += pending.value.as_ref().map_or(0, Bytes::len);
            }
        }
        self.value_bytes -= freed;
        self.applied = applied;
    }

    /// The entries under `prefix` strictly after `start_after` (or from `prefix`), in key
    /// order.
    pub fn range<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Pending)> + 'a {
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        self.changes
            .range::<_, str>((lower, Bound::Unbounded))
            .map(|(key, pending)| (&**key, pending))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }
}

/// Where the next key of a merged range comes from.
pub(crate) enum Next<'a, R> {
    /// A change in the overlay (it shadows redb's row for the same key, if any).
    Overlay(&'a str, &'a Pending),
    /// A row only redb has.
    Redb(R),
}

/// Merges two key-ordered streams, the overlay's winning on equal keys. `redb_key` reads the
/// key of a redb row.
pub(crate) fn merge<'a, O, B, R>(
    overlay: O,
    redb: B,
    redb_key: impl Fn(&R) -> &str,
) -> impl Iterator<Item = Next<'a, R>>
where
    O: Iterator<Item = (&'a str, &'a Pending)>,
    B: Iterator<Item = R>,
{
    let mut overlay = overlay.peekable();
    let mut redb = redb.peekable();
    std::iter::from_fn(move || {
        let take_overlay = match (overlay.peek(), redb.peek()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((ours, _)), Some(row)) => {
                let theirs = redb_key(row);
                if *ours == theirs {
                    // Shadowed: the overlay holds the newer state of this key.
                    redb.next();
                    true
                } else {
                    *ours < theirs
                }
            }
        };
        if take_overlay {
            overlay
                .next()
                .map(|(key, pending)| Next::Overlay(key, pending))
        } else {
            redb.next().map(Next::Redb)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: Revision, value: &'static str) -> Pending {
        Pending {
            create_revision: revision,
            mod_revision: revision,
            value: Some(Bytes::from_static(value.as_bytes())),
        }
    }

    fn tombstone(revision: Revision) -> Pending {
        Pending {
            create_revision: 0,
            mod_revision: revision,
            value: None,
        }
    }

    #[test]
    fn prune_keeps_only_changes_after_the_applied_revision_and_counts_bytes() {
        let mut overlay = Overlay::empty(0);
        overlay.insert("a", put(1, "xx"));
        overlay.insert("b", put(2, "yyy"));
        overlay.insert("a", put(3, "z"));
        overlay.insert("c", tombstone(4));
        overlay.revision = 4;
        assert_eq!(overlay.value_bytes, 4);
        overlay.prune(2);
        let keys: Vec<_> = overlay.changes.keys().map(|key| key.to_string()).collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(overlay.value_bytes, 1);
        assert_eq!(overlay.applied, 2);
        // Never backwards.
        overlay.prune(1);
        assert_eq!(overlay.applied, 2);
    }

    #[test]
    fn a_redb_snapshot_pairs_only_between_applied_and_revision() {
        let mut overlay = Overlay::empty(5);
        overlay.revision = 9;
        assert!(!overlay.pairs_with(4));
        assert!(overlay.pairs_with(5));
        assert!(overlay.pairs_with(9));
        assert!(!overlay.pairs_with(10));
    }

    #[test]
    fn merge_interleaves_in_key_order_and_the_overlay_shadows_redb() {
        let mut overlay = Overlay::empty(0);
        overlay.insert("/p/b", put(5, "new-b"));
        overlay.insert("/p/d", tombstone(6));
        overlay.insert("/q/a", put(7, "other prefix"));
        let redb = ["/p/a", "/p/b", "/p/c", "/p/d", "/p/e"];
        let merged: Vec<String> = merge(overlay.range("/p/", None), redb.into_iter(), |row| row)
            .map(|next| match next {
                Next::Overlay(key, pending) if pending.value.is_some() => format!("{key}*"),
                Next::Overlay(key, _) => format!("{key}-"),
                Next::Redb(key) => key.to_owned(),
            })
            .collect();
        assert_eq!(merged, ["/p/a", "/p/b*", "/p/c", "/p/d-", "/p/e"]);

        let after: Vec<&str> = overlay
            .range("/p/", Some("/p/b"))
            .map(|(key, _)| key)
            .collect();
        assert_eq!(after, ["/p/d"]);
    }
}
