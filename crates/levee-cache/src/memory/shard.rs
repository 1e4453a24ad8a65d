//! One shard: a dense slab of entries, a hash table of indices into it, and
//! the S3-FIFO queues threaded through the slab, under one lock.
//!
//! - The table holds `u32` indices, not entries: at most about 10 bytes per
//!   entry at any load factor, against the entry's own size for a table
//!   holding entries inline (whose buckets are half empty after a resize).
//! - The slab stays dense: a removal moves the last entry into the hole and
//!   re-points its table index and its queue neighbours.
//! - The small and main queues are circular doubly linked lists through the
//!   entries' `prev`/`next` indices: a queue costs 8 bytes an entry, a
//!   removal unlinks at once, and no dead queue slot is left behind.
//! - S3-FIFO's ghosts (keys evicted from the small queue) stay in the table,
//!   in their keys' own buckets, as tagged values: an eviction turns the
//!   victim's table value into its ghost (the bucket it found anyway), and
//!   a new key's probe finds its ghost on the way. A FIFO of the ghosts'
//!   tags forgets the oldest. (A ghost table of its own cost an insert two
//!   random cache lines more: the new key's check and the victim's note.)
//!
//! The table is looked up with the hash the cache computed to choose the
//! shard, so a get hashes its key once. Reads take the shard's read lock and
//! bump the entry's 2-bit frequency with a relaxed atomic; inserts and
//! evictions take the write lock.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU8, Ordering};

use hashbrown::{HashTable, hash_table as table};
use smallvec::SmallVec;

use super::entry::{EvictionCause, EvictionPolicy};

pub(crate) type Hasher = foldhash::fast::RandomState;

/// No entry: an empty queue's head, and a new key's table bucket while its
/// slot is decided.
const NIL: u32 = u32::MAX;
/// A table value with this bit is a ghost's tag (or `NIL`), one without it
/// an entry's slot.
const GHOST: u32 = 1 << 31;
/// Entries a shard holds at most, whatever its capacity: slot indices are
/// below [`GHOST`].
const MAX_ENTRIES: usize = GHOST as usize;
/// The hash's low bits a ghost's tag keeps: its bucket position in a table
/// of up to `2^TAG_POSITION_BITS` buckets.
const TAG_POSITION_BITS: u32 = 24;
const TAG_POSITION_MASK: u32 = (1 << TAG_POSITION_BITS) - 1;

/// An entry after its key: what a get reads (the value, the fresh time, the
/// frequency), then its queue and weight. Kept apart from the entry's links
/// ([`Links`]) so that for small keys and values the whole of it is one
/// aligned 32-byte block (`u64` keys and values), never split across two
/// cache lines.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Slot<V> {
    pub(crate) value: V,
    pub(crate) fresh_until: u64,
    freq: AtomicU8,
    /// In the main queue (else the small one). With `weight`, it fills what
    /// would otherwise be padding.
    in_main: bool,
    weight: u32,
}

impl<V> Slot<V> {
    /// Counts a read: the 2-bit frequency saturates at 3. A lost update
    /// under a race only undercounts one read, which S3-FIFO tolerates.
    #[inline]
    pub(crate) fn touch(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < 3 {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
#[repr(C, align(32))]
struct Entry<K, V> {
    key: K,
    slot: Slot<V>,
}

/// The part of an entry that gets do not read (16 bytes): its stale time
/// and its neighbours in its queue (itself when alone in it).
#[derive(Debug, Clone, Copy)]
struct Links {
    stale_until: u64,
    prev: u32,
    next: u32,
}

#[repr(C)]
pub(crate) struct Shard<K, V> {
    /// Indices into `entries` (and `links`), hashed by the cache's hash of
    /// the key.
    table: HashTable<u32>,
    entries: Vec<Entry<K, V>>,
    /// `links[i]` belongs to `entries[i]`.
    links: Vec<Links>,
    /// Heads of the circular queues (`NIL` when empty); a tail is its
    /// head's `prev`.
    small: u32,
    main: u32,
    /// The tags of the ghosts in the table, oldest first: a ghost is
    /// forgotten once about as many newer ones were made as the shard holds
    /// entries.
    ghosts: VecDeque<u32>,
    small_weight: u64,
    pub(crate) weight: u64,
    pub(crate) counts: Counts,
}

/// The small queue's share of a shard: a 32nd (about 3 %; the S3-FIFO
/// paper uses 10 %). Measured with `examples/hit_ratio` (capacity 10k):
/// Zipf 0.8 33.62 -> 34.10 %, Zipf 1.0 65.98 -> 66.40 %, loop/scan 48.44
/// either way. The rest is the main queue's share, which new keys enter
/// directly while it has room.
#[inline]
fn small_target(capacity: u64) -> u64 {
    (capacity / 32).max(1)
}

/// A key's ghost: a table value with [`GHOST`] set, the hash's top 7 bits
/// (the table's tag for it) and its low 24 (the table's bucket position, in
/// tables of up to 2^24 buckets), so that [`ghost_hash`] places it where
/// the key itself would be. A false match (about one in 2^31 a compared
/// ghost) only sends a new key straight to the main queue.
#[inline]
fn ghost_tag(hash: u64) -> u32 {
    let tag =
        GHOST | ((hash >> 57) as u32) << TAG_POSITION_BITS | (hash as u32 & TAG_POSITION_MASK);
    // `NIL` marks a new key's bucket.
    if tag == NIL { NIL - 1 } else { tag }
}

/// A hash that places a ghost's `tag` as its key's own hash does.
#[inline]
fn ghost_hash(tag: u32) -> u64 {
    u64::from(tag >> TAG_POSITION_BITS & 0x7F) << 57 | u64::from(tag & TAG_POSITION_MASK)
}

/// What an insert displaced, for the eviction listener, or to be dropped
/// after the shard's lock is released (a value's destructor may be slow):
/// inline up to two (an insert replaces one value or evicts about one
/// entry), so an insert allocates nothing to report them. With no listener
/// and keys and values that have no destructor, nothing is kept: a pushed
/// entry is simply forgotten where it is (no copy into the buffer).
pub(crate) struct Removed<K, V> {
    items: SmallVec<[(K, V, EvictionCause); 2]>,
    keep: bool,
}

impl<K, V> Removed<K, V> {
    /// An empty buffer; `listener`: whether a listener is to be told.
    #[inline]
    pub(crate) fn new(listener: bool) -> Self {
        Removed {
            items: SmallVec::new(),
            keep: listener || std::mem::needs_drop::<K>() || std::mem::needs_drop::<V>(),
        }
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, item: (K, V, EvictionCause)) {
        if self.keep {
            self.items.push(item);
        }
    }

    /// What was kept, in the order it left.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (K, V, EvictionCause)> + '_ {
        self.items.drain(..)
    }
}

/// What a shard's inserts and removals did, counted under its write lock
/// (plain adds, no shared atomic on the insert path); summed by
/// `MemoryCache::stats`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) inserts: u64,
    pub(crate) replaced: u64,
    pub(crate) evicted: u64,
    pub(crate) expired: u64,
    pub(crate) invalidated: u64,
}

/// What an insert needs besides the entry: how much the shard may hold and
/// how it makes room, the time, and the cache's hasher (kept out of the
/// shard, whose header an insert reads whole: one cache line less).
#[derive(Clone, Copy)]
pub(crate) struct Room<'a> {
    pub(crate) hasher: &'a Hasher,
    pub(crate) capacity: u64,
    pub(crate) policy: EvictionPolicy,
    pub(crate) now: u64,
}

impl<K: Hash + Eq, V> Shard<K, V> {
    /// A shard with room for `entries` entries.
    pub(crate) fn with_capacity(entries: usize) -> Self {
        Shard {
            table: HashTable::with_capacity(entries),
            entries: Vec::with_capacity(entries),
            links: Vec::with_capacity(entries),
            small: NIL,
            main: NIL,
            ghosts: VecDeque::new(),
            small_weight: 0,
            weight: 0,
            counts: Counts::default(),
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries the slab has room for without growing.
    #[cfg(test)]
    pub(crate) fn reserved(&self) -> usize {
        self.entries.capacity()
    }

    /// The index of `key`, whose hash (by the cache's hasher) is `hash`.
    #[inline]
    fn index_of<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let entries = &self.entries;
        self.table
            .find(hash, |&i| {
                entries
                    .get(i as usize)
                    .is_some_and(|e| e.key.borrow() == key)
            })
            .copied()
    }

    /// The slot of `key`, whose hash (by the cache's hasher) is `hash`.
    #[inline]
    pub(crate) fn get<Q>(&self, hash: u64, key: &Q) -> Option<&Slot<V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // The slot is kept as the probe matches it: no second index into
        // the slab.
        let entries = &self.entries;
        let mut hit = None;
        self.table.find(hash, |&i| match entries.get(i as usize) {
            Some(e) if e.key.borrow() == key => {
                hit = Some(&e.slot);
                true
            }
            _ => false,
        })?;
        hit
    }

    /// The slot of `key` and its stale time.
    pub(crate) fn get_with_stale<Q>(&self, hash: u64, key: &Q) -> Option<(&Slot<V>, u64)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let i = self.index_of(hash, key)? as usize;
        Some((&self.entries.get(i)?.slot, self.links.get(i)?.stale_until))
    }

    fn link(&self, i: u32) -> &Links {
        &self.links[i as usize]
    }

    fn link_mut(&mut self, i: u32) -> &mut Links {
        &mut self.links[i as usize]
    }

    /// Inserts or replaces `key` (whose hash is `hash`), then evicts until
    /// within `capacity`.
    ///
    /// A new key is placed after the evictions it causes, as if it were
    /// already at the back of its queue (the decisions are those of
    /// linking it first): the first entry to leave hands it its slot, so
    /// the common insert into a full shard moves no other entry.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        fresh_until: u64,
        stale_until: u64,
        weight: u32,
        room: &Room<'_>,
        removed: &mut Removed<K, V>,
    ) {
        let Room {
            hasher,
            capacity,
            policy,
            ..
        } = *room;
        self.counts.inserts += 1;
        // One probe finds the key, or its ghost (whose bucket it takes), or
        // the bucket a new key goes to. A new key's bucket holds `NIL` until
        // `place` knows its slot: evictions only remove table values or turn
        // them into ghosts, which moves no other bucket.
        let entries = &self.entries;
        let found = self.table.entry(
            hash,
            |&v| {
                if v >= GHOST {
                    v == ghost_tag(hash)
                } else {
                    entries.get(v as usize).is_some_and(|e| e.key == key)
                }
            },
            |&v| {
                if v >= GHOST {
                    ghost_hash(v)
                } else {
                    hasher.hash_one(&entries[v as usize].key)
                }
            },
        );
        let (found, ghost) = match found {
            table::Entry::Occupied(e) if *e.get() >= GHOST => (Err(e.bucket_index()), true),
            table::Entry::Occupied(e) => (Ok(*e.get()), false),
            table::Entry::Vacant(v) => (Err(v.insert(NIL).bucket_index()), false),
        };
        let found = match found {
            // Another key's ghost can share the key's tag, ahead of the key
            // itself in the probe (about one in 2^31 a ghost): the key is
            // looked for past it, and the ghost stays if the key is held.
            Err(bucket) if ghost => match self.index_of(hash, &key) {
                Some(i) => Ok(i),
                None => {
                    if let Some(v) = self.table.get_bucket_mut(bucket) {
                        *v = NIL;
                    }
                    Err(bucket)
                }
            },
            found => found,
        };
        match found {
            Ok(i) => self.replace(i, key, value, fresh_until, stale_until, weight, removed),
            Err(bucket) => {
                // To the main queue: a key evicted recently (a ghost), or
                // any key while the main queue is below its share (a cache
                // filling up; else its first keys would all wait in the
                // small queue, which then drains only as they are
                // promoted).
                let to_main = policy == EvictionPolicy::S3Fifo
                    && (ghost
                        || self.weight - self.small_weight + u64::from(weight)
                            <= capacity - small_target(capacity));
                let new = Entry {
                    key,
                    slot: Slot {
                        value,
                        fresh_until,
                        freq: AtomicU8::new(0),
                        in_main: to_main,
                        weight,
                    },
                };
                self.place(hash, bucket, new, stale_until, room, removed);
            }
        }
        self.evict_while_over(room, removed);
    }

    /// Gives the entry at slot `i` (of the same key) a new value, times
    /// and weight; the old value is reported as replaced.
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        i: u32,
        key: K,
        value: V,
        fresh_until: u64,
        stale_until: u64,
        weight: u32,
        removed: &mut Removed<K, V>,
    ) {
        let slot = &mut self.entries[i as usize].slot;
        let old = std::mem::replace(&mut slot.value, value);
        slot.fresh_until = fresh_until;
        let old_weight = u64::from(std::mem::replace(&mut slot.weight, weight));
        let in_main = slot.in_main;
        self.links[i as usize].stale_until = stale_until;
        self.weight = self.weight - old_weight + u64::from(weight);
        if !in_main {
            self.small_weight = self.small_weight - old_weight + u64::from(weight);
        }
        self.counts.replaced += 1;
        removed.push((key, old, EvictionCause::Replaced));
    }

    /// Puts the new entry `new`, whose table bucket is `bucket`, in: into
    /// the slot of the first entry that must leave to make room, else at
    /// the end of the slab; or reports `new` itself as evicted when it
    /// would have been the first to go (and empties its bucket).
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        hash: u64,
        bucket: usize,
        new: Entry<K, V>,
        stale_until: u64,
        room: &Room<'_>,
        removed: &mut Removed<K, V>,
    ) {
        let Room {
            capacity,
            policy,
            now,
            ..
        } = *room;
        let weight = u64::from(new.slot.weight);
        let to_main = new.slot.in_main;
        // Counted as linked at the back of its queue while evictions decide.
        self.weight += weight;
        if !to_main {
            self.small_weight += weight;
        }
        // Into the small queue only: evicting from the main queue rotates
        // it, and the rotated entries belong behind a new entry there.
        while !to_main && self.over(capacity, 1) {
            if self.new_is_head_victim(capacity, policy) {
                // The one entry of the small queue, at its head: it goes at
                // once, as it would have if it had been linked.
                self.weight -= weight;
                self.small_weight -= weight;
                let expired = stale_until <= now;
                let ghost = policy == EvictionPolicy::S3Fifo && !expired && self.ghosts_fit();
                let cause = self.count_eviction(expired);
                let tag = ghost.then(|| ghost_tag(hash));
                if let Ok(mut placeholder) = self.table.get_bucket_entry(bucket) {
                    match tag {
                        Some(tag) => *placeholder.get_mut() = tag,
                        None => {
                            placeholder.remove();
                        }
                    }
                }
                if let Some(tag) = tag {
                    self.remember(tag, self.entries.len());
                }
                removed.push((new.key, new.slot.value, cause));
                return;
            }
            let Some((i, old_hash, expired, ghost)) = self.next_victim(room) else {
                continue;
            };
            // `i` leaves and `new` takes its slot.
            let cause = self.count_eviction(expired);
            self.detach(i, old_hash, ghost.then_some(self.entries.len()));
            let old = std::mem::replace(&mut self.entries[i as usize], new);
            self.links[i as usize] = Links {
                stale_until,
                prev: i,
                next: i,
            };
            self.link_new(i, bucket, to_main, weight);
            removed.push((old.key, old.slot.value, cause));
            return;
        }
        let i = self.entries.len() as u32;
        self.entries.push(new);
        self.links.push(Links {
            stale_until,
            prev: i,
            next: i,
        });
        self.link_new(i, bucket, to_main, weight);
    }

    /// Links the new entry at slot `i` (its links set, counted in the
    /// weights already) into its table bucket and the back of its queue.
    #[inline(always)]
    fn link_new(&mut self, i: u32, bucket: usize, to_main: bool, weight: u64) {
        if let Some(j) = self.table.get_bucket_mut(bucket) {
            *j = i;
        }
        if !to_main {
            // `link_back` adds it to the small queue's weight again.
            self.small_weight -= weight;
        }
        self.link_back(i, to_main);
    }

    /// Whether the shard holds more than `capacity` (or too many entries),
    /// `pending` entries not yet in the slab included.
    fn over(&self, capacity: u64, pending: usize) -> bool {
        (self.weight > capacity || self.entries.len() + pending >= MAX_ENTRIES)
            && self.entries.len() + pending > 0
    }

    /// Evicts until within `capacity`.
    fn evict_while_over(&mut self, room: &Room<'_>, removed: &mut Removed<K, V>) {
        while self.over(room.capacity, 0) {
            if let Some((i, hash, expired, ghost)) = self.next_victim(room) {
                let cause = self.count_eviction(expired);
                let bound = self.entries.len() - 1;
                let (key, value) = self.take(i, hash, room.hasher, ghost.then_some(bound));
                removed.push((key, value, cause));
            }
        }
    }

    /// Whether a new entry for the small queue, not yet linked, would be
    /// the next to leave: it would be alone in that queue, and eviction
    /// takes from it (see [`next_victim`](Self::next_victim)) when it is due
    /// (its weight counted) or when the main queue is empty.
    fn new_is_head_victim(&self, capacity: u64, policy: EvictionPolicy) -> bool {
        let small_target = small_target(capacity);
        self.small == NIL
            && (policy == EvictionPolicy::Fifo
                || self.small_weight >= small_target
                || self.main == NIL)
    }

    /// Appends entry `i` (in no queue) to the back of the main or the small
    /// queue.
    #[inline(always)]
    fn link_back(&mut self, i: u32, main: bool) {
        let head = if main { self.main } else { self.small };
        if head == NIL {
            let l = self.link_mut(i);
            (l.prev, l.next) = (i, i);
            if main {
                self.main = i;
            } else {
                self.small = i;
            }
        } else {
            let tail = self.link(head).prev;
            let l = self.link_mut(i);
            (l.prev, l.next) = (tail, head);
            self.link_mut(tail).next = i;
            self.link_mut(head).prev = i;
        }
        let s = &mut self.entries[i as usize].slot;
        s.in_main = main;
        if !main {
            self.small_weight += u64::from(s.weight);
        }
    }

    /// Takes entry `i` out of its queue.
    #[inline(always)]
    fn unlink(&mut self, i: u32) {
        let Links { prev, next, .. } = *self.link(i);
        let Slot {
            in_main, weight, ..
        } = self.entries[i as usize].slot;
        if !in_main {
            self.small_weight -= u64::from(weight);
        }
        let head = if in_main {
            &mut self.main
        } else {
            &mut self.small
        };
        if next == i {
            *head = NIL;
        } else {
            if *head == i {
                *head = next;
            }
            self.link_mut(prev).next = next;
            self.link_mut(next).prev = prev;
        }
    }

    /// Takes entry `i` (hashed to `hash`) out of its queue, the table and
    /// the weight; it stays in its slot. With `ghost` (the ghosts to keep
    /// at most), its table bucket keeps its ghost.
    #[inline(always)]
    fn detach(&mut self, i: u32, hash: u64, ghost: Option<usize>) {
        self.unlink(i);
        let tag = ghost.map(|bound| (ghost_tag(hash), bound));
        if let Ok(mut found) = self.table.find_entry(hash, |&j| j == i) {
            match tag {
                Some((tag, _)) => *found.get_mut() = tag,
                None => {
                    found.remove();
                }
            }
        }
        if let Some((tag, bound)) = tag {
            self.remember(tag, bound);
        }
        self.weight -= u64::from(self.entries[i as usize].slot.weight);
    }

    /// Whether a ghost can be kept in the table: while its buckets are
    /// few enough for a tag to place (a shard of over 14 M entries keeps
    /// none). A ghost made in place in a larger table would sit where
    /// [`ghost_hash`] does not lead, and never be forgotten; one made before
    /// the table grew past it is moved by its tag, so it is still found to
    /// be forgotten (though no longer by its key).
    #[inline]
    fn ghosts_fit(&self) -> bool {
        self.table.num_buckets() <= 1 << TAG_POSITION_BITS
    }

    /// Notes the ghost `tag` (already in the table) as the newest, and
    /// forgets the oldest while more than `bound` are kept: the shard's
    /// entries once its victim has left (the paper sizes the ghost queue
    /// like the main queue). Not its capacity: with a weigher that is a
    /// weight, and 64 MiB of 1 KiB values would let the ghosts grow to 67 M.
    #[inline(always)]
    fn remember(&mut self, tag: u32, bound: usize) {
        self.ghosts.push_back(tag);
        while self.ghosts.len() > bound.max(1) {
            self.forget_oldest_ghost();
        }
    }

    /// Takes the oldest ghost out of the table (unless its key came back).
    #[inline(never)]
    fn forget_oldest_ghost(&mut self) {
        if let Some(old) = self.ghosts.pop_front()
            && let Ok(found) = self.table.find_entry(ghost_hash(old), |&v| v == old)
        {
            found.remove();
        }
    }

    /// Removes entry `i` (hashed to `hash`) from its queue, the table and
    /// the slab, moving the slab's last entry into its place; with `ghost`,
    /// its key is remembered as a ghost.
    fn take(&mut self, i: u32, hash: u64, hasher: &Hasher, ghost: Option<usize>) -> (K, V) {
        self.detach(i, hash, ghost);
        let last = (self.entries.len() - 1) as u32;
        let Entry { key, slot } = self.entries.swap_remove(i as usize);
        self.links.swap_remove(i as usize);
        if i != last {
            // The entry that was last now sits at `i`: re-point the table
            // and its queue neighbours (itself, when alone in its queue).
            let moved_hash = hasher.hash_one(&self.entries[i as usize].key);
            if let Some(j) = self.table.find_mut(moved_hash, |&j| j == last) {
                *j = i;
            }
            let Links { prev, next, .. } = *self.link(i);
            let in_main = self.entries[i as usize].slot.in_main;
            if prev == last {
                let l = self.link_mut(i);
                (l.prev, l.next) = (i, i);
            } else {
                self.link_mut(prev).next = i;
                self.link_mut(next).prev = i;
            }
            let head = if in_main {
                &mut self.main
            } else {
                &mut self.small
            };
            if *head == last {
                *head = i;
            }
        }
        (key, slot.value)
    }

    /// One step of S3-FIFO: promotes or rotates an entry (`None`), or
    /// names the entry that must leave, its hash and whether it had
    /// expired. An entry leaving the small queue is remembered as a ghost.
    #[inline(always)]
    fn next_victim(&mut self, room: &Room<'_>) -> Option<(u32, u64, bool, bool)> {
        let Room {
            hasher,
            capacity,
            policy,
            now,
        } = *room;
        let small_target = small_target(capacity);
        let from_small =
            policy == EvictionPolicy::Fifo || self.small_weight >= small_target || self.main == NIL;
        if from_small && self.small != NIL {
            self.evict_from_small(self.small, room)
        } else if self.main != NIL {
            let i = self.main;
            let links = *self.link(i);
            let expired = links.stale_until <= now;
            let freq = &self.entries[i as usize].slot.freq;
            let f = freq.load(Ordering::Relaxed);
            if f > 0 && !expired {
                // Seen again: back of the queue, one read forgotten (the
                // head of a circular queue moving on makes it the tail).
                freq.store(f - 1, Ordering::Relaxed);
                self.main = links.next;
                None
            } else {
                Some((
                    i,
                    hasher.hash_one(&self.entries[i as usize].key),
                    expired,
                    false,
                ))
            }
        } else if self.small != NIL {
            self.evict_from_small(self.small, room)
        } else {
            None
        }
    }

    #[inline(always)]
    fn evict_from_small(&mut self, i: u32, room: &Room<'_>) -> Option<(u32, u64, bool, bool)> {
        let Room {
            hasher,
            policy,
            now,
            ..
        } = *room;
        let expired = self.link(i).stale_until <= now;
        let freq = &self.entries[i as usize].slot.freq;
        if policy == EvictionPolicy::S3Fifo && !expired && freq.load(Ordering::Relaxed) > 0 {
            // Seen again while in the small queue: promote to main.
            freq.store(0, Ordering::Relaxed);
            self.unlink(i);
            self.link_back(i, true);
            return None;
        }
        let hash = hasher.hash_one(&self.entries[i as usize].key);
        let ghost = policy == EvictionPolicy::S3Fifo && !expired && self.ghosts_fit();
        Some((i, hash, expired, ghost))
    }

    /// Counts an entry leaving to make room; its cause.
    fn count_eviction(&mut self, expired: bool) -> EvictionCause {
        if expired {
            self.counts.expired += 1;
            EvictionCause::Expired
        } else {
            self.counts.evicted += 1;
            EvictionCause::Evicted
        }
    }

    /// LRU: moves `key` to the back of the queue.
    pub(crate) fn record_access<Q>(&mut self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if let Some(i) = self.index_of(hash, key) {
            self.unlink(i);
            self.link_back(i, false);
        }
    }

    /// Removes `key` (hashed to `hash`); returns the stored key and value.
    pub(crate) fn remove<Q>(&mut self, hasher: &Hasher, hash: u64, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let i = self.index_of(hash, key)?;
        Some(self.take(i, hash, hasher, None))
    }

    pub(crate) fn clear(&mut self) -> impl Iterator<Item = (K, V)> + use<K, V> {
        self.table.clear();
        self.ghosts.clear();
        self.links.clear();
        self.small = NIL;
        self.main = NIL;
        self.small_weight = 0;
        self.weight = 0;
        std::mem::take(&mut self.entries)
            .into_iter()
            .map(|e| (e.key, e.slot.value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::{NIL, Shard};
    use crate::MemoryCache;

    /// Every entry is in exactly one queue, the queues' links agree both
    /// ways, the table points at every entry, and the weights add up.
    fn check_invariants<V>(shard: &Shard<u64, V>, hasher: &super::Hasher) {
        let mut seen = HashSet::new();
        let mut small_weight = 0;
        for (head, main) in [(shard.small, false), (shard.main, true)] {
            if head == NIL {
                continue;
            }
            let mut i = head;
            loop {
                let s = &shard.entries[i as usize].slot;
                let l = shard.link(i);
                assert_eq!(s.in_main, main, "entry {i} is in the other queue");
                assert_eq!(shard.link(l.next).prev, i, "links of {i} disagree");
                assert!(seen.insert(i), "entry {i} is queued twice");
                if !main {
                    small_weight += u64::from(s.weight);
                }
                i = l.next;
                if i == head {
                    break;
                }
            }
        }
        assert_eq!(seen.len(), shard.entries.len(), "an entry is in no queue");
        assert_eq!(shard.small_weight, small_weight);
        let weight: u64 = shard.entries.iter().map(|e| u64::from(e.slot.weight)).sum();
        assert_eq!(shard.links.len(), shard.entries.len());
        assert_eq!(shard.weight, weight);
        assert_eq!(shard.table.len(), shard.entries.len() + ghosts_in(shard));
        assert!(ghosts_in(shard) <= shard.ghosts.len());
        for (i, e) in shard.entries.iter().enumerate() {
            let hash = std::hash::BuildHasher::hash_one(hasher, e.key);
            assert_eq!(shard.index_of(hash, &e.key), Some(i as u32));
        }
    }

    /// An insert reads and writes most of its shard's header: the lock and
    /// the header fit in three cache lines (the hasher and the ghost queue's
    /// own queue were a fourth).
    #[test]
    fn a_locked_shard_header_fits_three_cache_lines() {
        let size = std::mem::size_of::<parking_lot::RwLock<Shard<u64, u64>>>();
        assert!(size <= 3 * 64, "{size} bytes");
    }

    #[test]
    fn queues_table_and_weights_stay_consistent_through_churn() {
        let cache = MemoryCache::<u64, u64>::builder()
            .max_capacity(64)
            .shards(1)
            .build()
            .unwrap();
        let mut x = 7u64;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 200;
            match x % 10 {
                0..=4 => {
                    cache.get(&k);
                }
                5..=7 => cache.insert(k, step),
                _ => {
                    cache.invalidate(&k);
                }
            }
            if step % 97 == 0 {
                check_invariants(&cache.inner.shards[0].read(), &cache.inner.hasher);
            }
        }
        let shard = cache.inner.shards[0].read();
        check_invariants(&shard, &cache.inner.hasher);
        assert!(shard.len() <= 64);
    }

    /// hashbrown tags a slot with the top 7 bits of its hash and compares
    /// the keys of the slots whose tag matches. A shard chosen by those
    /// same bits saw 2 tags of 128; one chosen by bits 32 and up saw 62 to
    /// 110 for about one hasher seed in 30 (foldhash's output bits are not
    /// independent for small integer keys): a probe compared the key (a
    /// cache miss on a random entry) of many of the slots it passed.
    /// Checked on 60 fixed seeds, as the cache's random ones vary.
    #[test]
    fn the_keys_of_one_shard_carry_most_table_tags() {
        use std::hash::BuildHasher;
        for seed in 1..=60u64 {
            let shared = Box::leak(Box::new(foldhash::SharedSeed::from_u64(
                seed.wrapping_mul(0x1234_5678_9abc_def1),
            )));
            let hasher = foldhash::fast::SeedableRandomState::with_seed(seed ^ 0x5555, shared);
            let mut tags = HashSet::new();
            for k in 0..50_000u64 {
                let h = hasher.hash_one(k);
                if super::super::shard_bits(h) & 63 == 0 {
                    tags.insert(h >> 57);
                }
            }
            assert!(
                tags.len() > 120,
                "seed {seed}: the keys of shard 0 of 64 carry {} tags",
                tags.len()
            );
        }
    }

    /// The keys that fill an empty cache go to the main queue while it has
    /// room: later new keys, not those, are the first to leave. (They all
    /// went to the small queue, so the first keys were evicted first,
    /// unread or not, and the small queue drained to its share only as
    /// its keys were promoted: on a long Zipf trace that cost 2.6 points
    /// of hit ratio against quick_cache, which admits the same way.)
    #[test]
    fn keys_that_fill_an_empty_cache_wait_in_the_main_queue() {
        let cache = MemoryCache::<u64, u64>::builder()
            .max_capacity(64)
            .shards(1)
            .build()
            .unwrap();
        for k in 0..64 {
            cache.insert(k, k);
        }
        for k in 100..110 {
            cache.insert(k, k);
        }
        for k in 0..10 {
            assert_eq!(cache.get(&k), Some(k), "key {k} of the fill was evicted");
        }
        let shard = cache.inner.shards[0].read();
        check_invariants(&shard, &cache.inner.hasher);
        assert_eq!(shard.len(), 64);
    }

    /// A new key that is itself the first to leave (the small queue empty
    /// after a promotion) is reported as evicted and leaves nothing behind:
    /// not in the slab, not in the table (where its bucket was taken
    /// before the evictions decided).
    #[test]
    fn a_new_key_evicted_at_once_leaves_no_trace_in_the_table() {
        let cache = MemoryCache::<u64, u64>::builder()
            .max_capacity(4)
            .shards(1)
            .eviction_listener(|_, _, _| {})
            .build()
            .unwrap();
        for k in 0..4 {
            cache.insert(k, k);
        }
        // Key 3 waits in the small queue; read, it is promoted when key 4
        // comes, and key 4 then finds itself alone there, first to go.
        assert_eq!(cache.get(&3), Some(3));
        cache.insert(4, 4);
        {
            let shard = cache.inner.shards[0].read();
            check_invariants(&shard, &cache.inner.hasher);
        }
        assert_eq!(cache.get(&4), None);
        assert_eq!(cache.stats().evicted, 1);
        for k in 10..100 {
            cache.insert(k, k);
            let shard = cache.inner.shards[0].read();
            check_invariants(&shard, &cache.inner.hasher);
        }
    }

    /// An entry-bounded shard's slab is made at its size when the cache is
    /// built and never grows: not even for the moment a new entry bound
    /// for the main queue waits for its eviction (which doubled a slab of
    /// exactly the capacity, half of it never used).
    #[test]
    fn a_full_shard_keeps_the_slab_it_was_built_with() {
        // Two shards of 501 and 500 (the first holds the remainder).
        let cache = MemoryCache::<u64, u64>::builder()
            .max_capacity(1001)
            .shards(2)
            .build()
            .unwrap();
        let built = cache.inner.shards[0].read().entries.capacity();
        // Random keys of a range twice the capacity: evicted keys come back
        // as ghosts, to the main queue, while the shard is full.
        let mut x = 7u64;
        for k in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cache.insert(x % 2000, k);
        }
        let shard = cache.inner.shards[0].read();
        assert_eq!(shard.len(), 501);
        assert_eq!(shard.entries.capacity(), built);
        assert!(built < 550, "{built} slots for 501 entries");
    }

    /// Ghosts live in the shard's table, at their keys' own buckets: a
    /// shard that evicts keeps about as many as it holds entries (each
    /// leaves after that many newer ones), and a key that comes back while
    /// it is a ghost goes straight to the main queue, also after the table
    /// grew (rehashing every ghost by its tag) to hold them.
    #[test]
    fn a_key_back_while_a_ghost_goes_to_the_main_queue() {
        let cache = MemoryCache::<u64, u64>::builder()
            .max_capacity(1_000)
            .shards(1)
            .build()
            .unwrap();
        for k in 0..1_000u64 {
            cache.insert(k, k);
        }
        let built = cache.inner.shards[0].read().table.capacity();
        // Read once: the fill's keys stay in the main queue; new keys
        // pass through the small queue and leave as ghosts.
        for k in 0..1_000u64 {
            cache.get(&k);
        }
        for k in 10_000..12_000u64 {
            cache.insert(k, k);
        }
        {
            let shard = cache.inner.shards[0].read();
            check_invariants(&shard, &cache.inner.hasher);
            assert!(shard.table.capacity() > built, "the table did not grow");
            let ghosts = ghosts_in(&shard);
            assert!(
                (900..=1_000).contains(&ghosts),
                "{ghosts} ghosts for {} entries",
                shard.len()
            );
        }
        // A recent ghost: the last 31 keys are still in the small queue.
        let back = 11_900u64;
        assert_eq!(cache.get(&back), None, "key {back} is still held");
        cache.insert(back, 0);
        let shard = cache.inner.shards[0].read();
        check_invariants(&shard, &cache.inner.hasher);
        let hash = std::hash::BuildHasher::hash_one(&cache.inner.hasher, back);
        let i = shard.index_of(hash, &back).expect("held");
        assert!(
            shard.entries[i as usize].slot.in_main,
            "a ghost's key went to the small queue"
        );
    }

    /// A key's ghost and a live key can share a table tag (about one pair
    /// in 2^31 of a shard's keys; two such keys are searched for here)
    /// with the ghost first in the probe: an insert of the live key still
    /// finds it, and replaces its value, rather than taking the ghost for
    /// its own and adding the key a second time.
    #[test]
    fn a_live_key_is_found_past_a_ghost_that_shares_its_tag() {
        use std::hash::BuildHasher;

        use super::{EvictionCause, EvictionPolicy, Removed, Room, ghost_tag};
        let hasher = super::Hasher::default();
        let mut seen = std::collections::HashMap::new();
        let (a, b) = (0u64..)
            .find_map(|k| {
                seen.insert(ghost_tag(hasher.hash_one(k)), k)
                    .map(|other| (other, k))
            })
            .expect("a shared tag");
        let room = Room {
            hasher: &hasher,
            capacity: 3,
            policy: EvictionPolicy::S3Fifo,
            now: 0,
        };
        let mut shard = Shard::<u64, u64>::with_capacity(64);
        let put = |shard: &mut Shard<u64, u64>, key: u64, value: u64| {
            let mut removed = Removed::new(true);
            let hash = hasher.hash_one(key);
            shard.insert(hash, key, value, u64::MAX, u64::MAX, 1, &room, &mut removed);
            removed.drain().map(|(k, _, c)| (k, c)).collect::<Vec<_>>()
        };
        // Two keys fill the main queue's share; `a` waits in the small
        // queue and leaves as a ghost when `b` comes.
        let others = [a.wrapping_add(1) ^ b, a.wrapping_add(2) ^ b];
        for k in others {
            put(&mut shard, k, 0);
        }
        put(&mut shard, a, 1);
        assert_eq!(put(&mut shard, b, 2), vec![(a, EvictionCause::Evicted)]);
        assert_eq!(ghosts_in(&shard), 1);
        // `b` again: a replacement, nothing evicted.
        assert_eq!(put(&mut shard, b, 3), vec![(b, EvictionCause::Replaced)]);
        assert_eq!(shard.len(), 3);
        check_invariants(&shard, &hasher);
        assert_eq!(shard.get(hasher.hash_one(b), &b).map(|s| s.value), Some(3));
    }

    /// Ghosts held in `shard`'s table.
    fn ghosts_in<V>(shard: &Shard<u64, V>) -> usize {
        shard.table.iter().filter(|&&v| v >= super::GHOST).count()
    }

    /// A ghost's tag places it where its key's hash does, in any table of
    /// up to 2^24 buckets: the same bucket position and the same 7-bit tag.
    #[test]
    fn a_ghost_tag_hashes_to_its_keys_bucket_and_tag() {
        let mut h = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            let tag = super::ghost_tag(h);
            assert!(tag >= super::GHOST && tag != NIL);
            let placed = super::ghost_hash(tag);
            assert_eq!(placed >> 57, h >> 57);
            let mask = u64::from(super::TAG_POSITION_MASK);
            if tag != NIL - 1 {
                assert_eq!(placed & mask, h & mask);
            }
        }
        // The one hash whose tag would read as `NIL`.
        assert_eq!(super::ghost_tag(u64::MAX), NIL - 1);
    }

    /// Sequential integer keys (ids, counters), whatever the hasher's
    /// seed: a full shard keeps as many ghosts as it holds entries. (With
    /// ghosts in a table of their own, some seeds crowded its buckets with
    /// sequential keys and kept 73 % to 83 %.)
    #[test]
    fn sequential_keys_keep_nearly_a_shard_of_ghosts() {
        for _ in 0..5 {
            let cache = kib_values_in_a_mib(30_000);
            let shard = cache.inner.shards[0].read();
            let (ghosts, entries) = (ghosts_in(&shard), shard.len());
            assert!(
                ghosts * 100 >= entries * 95 && ghosts <= entries,
                "{ghosts} live ghosts for {entries} entries"
            );
        }
    }

    /// One shard of 1 KiB values in 1 MiB (about 1,000 entries, but a
    /// weight of 2^20), after `keys` sequential keys went in.
    fn kib_values_in_a_mib(keys: u64) -> MemoryCache<u64, u64> {
        let cache = MemoryCache::<u64, u64>::builder()
            .weigher(|_, _| 1024)
            .max_weight(1 << 20)
            .shards(1)
            .build()
            .unwrap();
        for k in 0..keys {
            cache.insert(k, k);
        }
        cache
    }

    #[test]
    fn ghost_queue_is_bounded_by_entries_not_by_weight() {
        let cache = kib_values_in_a_mib(200_000);
        let shard = cache.inner.shards[0].read();
        assert!(shard.len() <= 1024);
        assert!(
            shard.ghosts.len() <= shard.len() && ghosts_in(&shard) <= shard.ghosts.len(),
            "{} ghosts ({} in the table) for {} entries",
            shard.ghosts.len(),
            ghosts_in(&shard),
            shard.len()
        );
    }
}
