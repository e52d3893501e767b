//! Many named patterns compiled into one index: a trie over field paths, and per field
//! hash indexes for exact, prefix, suffix and case-insensitive values, so the cost per
//! event does not grow with the number of such patterns. Other operators are tested one
//! by one, but only for values at the fields they name.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use rustc_hash::FxHashMap;

use crate::cond::{fold_case, num_key, Cond, Scalar};
use crate::error::EventError;
use crate::event::{PathTrie, Scanner, Step};
use crate::parse::{Leaf, Pattern};

/// Most branches (after `$or` expansion) one matcher holds.
pub const MAX_BRANCHES_TOTAL: usize = 1 << 26;
/// Work limit for the array-consistency search of one branch on one event; past it the
/// branch counts as not matching (only adversarial events with huge arrays get there).
pub const MAX_ARRAY_SEARCH_STEPS: usize = 100_000;

/// A hit is a (branch, slot) pair packed in a u32: branch << 6 | slot.
type Hit = u32;

const NO_FIELD: u32 = u32::MAX;
/// Leaf id of a hit outside any array of objects (its position constrains nothing).
const NO_LEAF: u32 = u32::MAX;

#[derive(Default, Clone)]
struct Node {
    /// Children by name; the name's head and length reject most mismatches without
    /// touching the rest of the name.
    kids: Vec<Kid>,
    /// With many children: a hash table of (head, length) to the first of `kids` in that
    /// bucket (the rest chained by `Kid::next`); empty for a linear scan.
    table: Vec<u32>,
    /// 64 minus log2 of the table size.
    shift: u32,
    /// One bit per child (see [`filter_bit`]): a name whose bit is clear is no child.
    filter: u64,
    field: u32,
}

#[derive(Clone)]
struct Kid {
    head: u64,
    len: u32,
    node: u32,
    /// Next kid with the same (head, length), or `NO_KID`.
    next: u32,
    name: Box<[u8]>,
}

const NO_KID: u32 = u32::MAX;
/// Children beyond which a node looks names up by hash instead of a linear scan.
const LINEAR_KIDS: usize = 8;

/// The first eight bytes of `key`, zero-padded, as a little-endian word.
#[inline(always)]
fn head(key: &[u8]) -> u64 {
    let n = key.len();
    if n >= 8 {
        u64::from_le_bytes(key[..8].try_into().expect("8 bytes"))
    } else if n >= 4 {
        // Two overlapping 4-byte reads; the shared bytes are equal, so OR is exact.
        let lo = u32::from_le_bytes(key[..4].try_into().expect("4 bytes"));
        let hi = u32::from_le_bytes(key[n - 4..].try_into().expect("4 bytes"));
        u64::from(lo) | (u64::from(hi) << (8 * (n - 4)))
    } else if n > 0 {
        u64::from(key[0])
            | (u64::from(key[n / 2]) << (8 * (n / 2)))
            | (u64::from(key[n - 1]) << (8 * (n - 1)))
    } else {
        0
    }
}

impl Kid {
    #[inline(always)]
    fn is(&self, h: u64, key: &[u8]) -> bool {
        self.head == h
            && self.len as usize == key.len()
            && (key.len() <= 8 || self.name[8..] == key[8..])
    }
}

/// Hash map from an exact key to the hits it triggers, bucketed by key length for prefix
/// and suffix lookups (one probe per distinct length present).
type ByLen = Vec<(usize, FxHashMap<Box<str>, Vec<Hit>>)>;

#[derive(Default)]
struct FieldIndex {
    exact: FxHashMap<Box<str>, Vec<Hit>>,
    num: FxHashMap<(bool, u64), Vec<Hit>>,
    t: Vec<Hit>,
    f: Vec<Hit>,
    null: Vec<Hit>,
    prefix: ByLen,
    suffix: ByLen,
    eq_ic: FxHashMap<Box<str>, Vec<Hit>>,
    prefix_ic: ByLen,
    suffix_ic: ByLen,
    exists: Vec<Hit>,
    slow: Vec<(Cond, Hit)>,
}

impl FieldIndex {
    fn needs_fold(&self) -> bool {
        !self.eq_ic.is_empty() || !self.prefix_ic.is_empty() || !self.suffix_ic.is_empty()
    }
}

struct Branch {
    name: u32,
    /// Slots that must be hit (no `exists: false` among their conditions).
    required: u64,
    /// Slots also satisfied by absence: (slot, field).
    absent: Vec<(u8, u32)>,
    /// What was registered, for removal: (field, leaf).
    leaves: Vec<(u32, Leaf)>,
}

/// Many named patterns compiled into one matcher. Thread-safe for matching (`&self`).
pub struct Matcher<N> {
    names: Vec<Option<N>>,
    name_ids: FxHashMap<N, u32>,
    free_names: Vec<u32>,
    branches_of: Vec<Vec<u32>>,
    branches: Vec<Option<Branch>>,
    free_branches: Vec<u32>,
    nodes: Vec<Node>,
    fields: Vec<FieldIndex>,
    /// Branches made only of absent-ok slots: checked on every event.
    always: Vec<u32>,
}

impl<N> std::fmt::Debug for Matcher<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("names", &self.name_ids.len())
            .field(
                "branches",
                &(self.branches.len() - self.free_branches.len()),
            )
            .field("fields", &self.fields.len())
            .finish()
    }
}

/// The matcher is full (more than [`MAX_BRANCHES_TOTAL`] branches).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("matcher is full: more than {MAX_BRANCHES_TOTAL} pattern branches")]
pub struct CapacityError;

impl<N: Clone + Eq + Hash> Default for Matcher<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A bit chosen by a name's length and first byte; most names in an event are not
/// children of the node being walked, and this rejects them in a few instructions.
#[inline(always)]
fn filter_bit(key: &[u8]) -> u64 {
    let first = key.first().copied().unwrap_or(0) as usize;
    1 << ((key.len().wrapping_mul(7) ^ first) & 63)
}

impl PathTrie for [Node] {
    #[inline(always)]
    fn child(&self, node: u32, key: &[u8]) -> Option<u32> {
        let n = &self[node as usize];
        if n.filter & filter_bit(key) == 0 {
            return None;
        }
        n.find(key)
    }
    #[inline]
    fn has_children(&self, node: u32) -> bool {
        !self[node as usize].kids.is_empty()
    }
    #[inline]
    fn is_leaf(&self, node: u32) -> bool {
        self[node as usize].field != NO_FIELD
    }
}

impl Node {
    #[inline(never)]
    fn find(&self, key: &[u8]) -> Option<u32> {
        let h = head(key);
        if self.table.is_empty() {
            return self.kids.iter().find(|k| k.is(h, key)).map(|k| k.node);
        }
        let mut i = self.table[bucket(h, key.len(), self.shift)];
        while i != NO_KID {
            let k = &self.kids[i as usize];
            if k.is(h, key) {
                return Some(k.node);
            }
            i = k.next;
        }
        None
    }
}

/// Bucket of a name with head `h` and length `len` in a table of `1 << (64 - shift)`.
#[inline(always)]
fn bucket(h: u64, len: usize, shift: u32) -> usize {
    ((h ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
}

impl Node {
    fn add_kid(&mut self, name: &[u8], node: u32) {
        self.filter |= filter_bit(name);
        self.kids.push(Kid {
            head: head(name),
            len: u32::try_from(name.len()).unwrap_or(u32::MAX),
            node,
            next: NO_KID,
            name: name.into(),
        });
        if self.kids.len() > LINEAR_KIDS {
            // Many siblings: rebuild the hash table at a load factor of at most 1/4.
            let bits = (self.kids.len() * 4).next_power_of_two().trailing_zeros();
            self.shift = 64 - bits;
            self.table = vec![NO_KID; 1 << bits];
            for i in 0..self.kids.len() {
                let k = &mut self.kids[i];
                let b = bucket(k.head, k.len as usize, self.shift);
                k.next = self.table[b];
                self.table[b] = i as u32;
            }
        }
    }
}

fn bylen_add(v: &mut ByLen, key: &str, hit: Hit) {
    let len = key.len();
    let pos = match v.binary_search_by_key(&len, |(l, _)| *l) {
        Ok(p) => p,
        Err(p) => {
            v.insert(p, (len, FxHashMap::default()));
            p
        }
    };
    v[pos].1.entry(key.into()).or_default().push(hit);
}

fn map_remove(m: &mut FxHashMap<Box<str>, Vec<Hit>>, key: &str, branch: u32) {
    if let Some(v) = m.get_mut(key) {
        v.retain(|h| h >> 6 != branch);
        if v.is_empty() {
            m.remove(key);
        }
    }
}

fn bylen_remove(v: &mut ByLen, key: &str, branch: u32) {
    if let Ok(p) = v.binary_search_by_key(&key.len(), |(l, _)| *l) {
        map_remove(&mut v[p].1, key, branch);
        if v[p].1.is_empty() {
            v.remove(p);
        }
    }
}

#[inline]
fn emit(hits: &[Hit], out: &mut impl FnMut(Hit)) {
    for &h in hits {
        out(h);
    }
}

#[inline]
fn bylen_probe(v: &ByLen, s: &str, suffix: bool, out: &mut impl FnMut(Hit)) {
    for (len, map) in v {
        if *len > s.len() {
            break;
        }
        let part = if suffix {
            s.get(s.len() - len..)
        } else {
            s.get(..*len)
        };
        if let Some(h) = part.and_then(|p| map.get(p)) {
            emit(h, out);
        }
    }
}

impl FieldIndex {
    fn add(&mut self, cond: &Cond, hit: Hit) {
        match cond {
            Cond::Str(s) => self.exact.entry(s.as_str().into()).or_default().push(hit),
            Cond::Num(x) => self.num.entry(num_key(*x)).or_default().push(hit),
            Cond::Bool(true) => self.t.push(hit),
            Cond::Bool(false) => self.f.push(hit),
            Cond::Null => self.null.push(hit),
            Cond::Prefix(p) => bylen_add(&mut self.prefix, p, hit),
            Cond::Suffix(p) => bylen_add(&mut self.suffix, p, hit),
            Cond::EqIc(p) => self.eq_ic.entry(p.as_str().into()).or_default().push(hit),
            Cond::PrefixIc(p) => bylen_add(&mut self.prefix_ic, p, hit),
            Cond::SuffixIc(p) => bylen_add(&mut self.suffix_ic, p, hit),
            Cond::Exists(true) => self.exists.push(hit),
            // Absence is handled per branch, not by hits.
            Cond::Exists(false) => {}
            other => self.slow.push((other.clone(), hit)),
        }
    }

    fn remove(&mut self, cond: &Cond, branch: u32) {
        let keep = |h: &Hit| h >> 6 != branch;
        match cond {
            Cond::Str(s) => map_remove(&mut self.exact, s, branch),
            Cond::Num(x) => {
                if let Entry::Occupied(mut e) = self.num.entry(num_key(*x)) {
                    e.get_mut().retain(keep);
                    if e.get().is_empty() {
                        e.remove();
                    }
                }
            }
            Cond::Bool(true) => self.t.retain(keep),
            Cond::Bool(false) => self.f.retain(keep),
            Cond::Null => self.null.retain(keep),
            Cond::Prefix(p) => bylen_remove(&mut self.prefix, p, branch),
            Cond::Suffix(p) => bylen_remove(&mut self.suffix, p, branch),
            Cond::EqIc(p) => map_remove(&mut self.eq_ic, p, branch),
            Cond::PrefixIc(p) => bylen_remove(&mut self.prefix_ic, p, branch),
            Cond::SuffixIc(p) => bylen_remove(&mut self.suffix_ic, p, branch),
            Cond::Exists(true) => self.exists.retain(keep),
            Cond::Exists(false) => {}
            _ => self.slow.retain(|(_, h)| keep(h)),
        }
    }

    /// Calls `out` for every hit the scalar triggers.
    #[inline]
    fn probe(&self, v: Scalar<'_>, fold: &mut String, out: &mut impl FnMut(Hit)) {
        match v {
            Scalar::Str(s) => {
                if let Some(h) = self.exact.get(s) {
                    emit(h, out);
                }
                bylen_probe(&self.prefix, s, false, out);
                bylen_probe(&self.suffix, s, true, out);
                if self.needs_fold() {
                    fold.clear();
                    if s.is_ascii() {
                        fold.extend(s.chars().map(|c| c.to_ascii_lowercase()));
                    } else {
                        fold.push_str(&fold_case(s));
                    }
                    if let Some(h) = self.eq_ic.get(fold.as_str()) {
                        emit(h, out);
                    }
                    bylen_probe(&self.prefix_ic, fold, false, out);
                    bylen_probe(&self.suffix_ic, fold, true, out);
                }
            }
            Scalar::Num(x) => {
                if !self.num.is_empty() {
                    if let Some(h) = self.num.get(&num_key(x)) {
                        emit(h, out);
                    }
                }
            }
            Scalar::Bool(true) => emit(&self.t, out),
            Scalar::Bool(false) => emit(&self.f, out),
            Scalar::Null => emit(&self.null, out),
        }
        emit(&self.exists, out);
        for (c, h) in &self.slow {
            if c.matches(v) {
                out(*h);
            }
        }
    }
}

/// Per-thread scratch space, so matching allocates nothing in the steady state.
#[derive(Default)]
struct Scratch {
    gen: u32,
    stamp: Vec<u32>,
    mask: Vec<u64>,
    arrayed: Vec<bool>,
    touched: Vec<u32>,
    present: Vec<u32>,
    name_stamp: Vec<u32>,
    out: Vec<u32>,
    /// (hit, leaf) for every hit, for the array-consistency check.
    hits: Vec<(Hit, u32)>,
    /// Per leaf: range into `steps`.
    leaves: Vec<(u32, u32)>,
    steps: Vec<Step>,
    fold: String,
    scanner: Scanner,
}

impl Scratch {
    fn begin(&mut self, branches: usize, fields: usize, names: usize) {
        if self.gen == u32::MAX {
            self.gen = 0;
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.present.iter_mut().for_each(|s| *s = 0);
            self.name_stamp.iter_mut().for_each(|s| *s = 0);
        }
        self.gen += 1;
        if self.stamp.len() < branches {
            self.stamp.resize(branches, 0);
            self.mask.resize(branches, 0);
            self.arrayed.resize(branches, false);
        }
        if self.present.len() < fields {
            self.present.resize(fields, 0);
        }
        if self.name_stamp.len() < names {
            self.name_stamp.resize(names, 0);
        }
        self.touched.clear();
        self.hits.clear();
        self.leaves.clear();
        self.steps.clear();
        self.out.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

pub(crate) fn compatible(a: &[Step], b: &[Step]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x.0 != y.0 {
            // Different array instances: no shared array from here down.
            return true;
        }
        if x.1 != y.1 {
            return false;
        }
    }
    true
}

impl<N: Clone + Eq + Hash> Matcher<N> {
    /// An empty matcher.
    pub fn new() -> Self {
        Matcher {
            names: Vec::new(),
            name_ids: FxHashMap::default(),
            free_names: Vec::new(),
            branches_of: Vec::new(),
            branches: Vec::new(),
            free_branches: Vec::new(),
            nodes: vec![Node {
                field: NO_FIELD,
                ..Node::default()
            }],
            fields: Vec::new(),
            always: Vec::new(),
        }
    }

    /// Number of distinct names held.
    pub fn len(&self) -> usize {
        self.name_ids.len()
    }

    /// Whether no pattern is held.
    pub fn is_empty(&self) -> bool {
        self.name_ids.is_empty()
    }

    fn field_for(&mut self, path: &[String]) -> u32 {
        let mut node = 0u32;
        for key in path {
            let k = key.as_bytes();
            node = match self.nodes[..].child(node, k) {
                Some(c) => c,
                None => {
                    let id = self.nodes.len() as u32;
                    self.nodes.push(Node {
                        field: NO_FIELD,
                        ..Node::default()
                    });
                    self.nodes[node as usize].add_kid(k, id);
                    id
                }
            };
        }
        let n = &mut self.nodes[node as usize];
        if n.field == NO_FIELD {
            n.field = self.fields.len() as u32;
            self.fields.push(FieldIndex::default());
        }
        n.field
    }

    /// Adds a pattern under `name`. Several patterns under one name act as an OR.
    pub fn add_pattern(&mut self, name: N, pattern: &Pattern) -> Result<(), CapacityError> {
        let live = self.branches.len() - self.free_branches.len();
        if live + pattern.branches().len() > MAX_BRANCHES_TOTAL {
            return Err(CapacityError);
        }
        let name_id = match self.name_ids.get(&name) {
            Some(&id) => id,
            None => {
                let id = match self.free_names.pop() {
                    Some(id) => {
                        self.names[id as usize] = Some(name.clone());
                        id
                    }
                    None => {
                        self.names.push(Some(name.clone()));
                        self.branches_of.push(Vec::new());
                        (self.names.len() - 1) as u32
                    }
                };
                self.name_ids.insert(name, id);
                id
            }
        };
        for leaves in pattern.branches() {
            let bid = match self.free_branches.pop() {
                Some(b) => b,
                None => {
                    self.branches.push(None);
                    (self.branches.len() - 1) as u32
                }
            };
            let mut br = Branch {
                name: name_id,
                required: 0,
                absent: Vec::new(),
                leaves: Vec::new(),
            };
            for (slot, leaf) in leaves.iter().enumerate() {
                let field = self.field_for(&leaf.path);
                let hit = (bid << 6) | slot as u32;
                for c in &leaf.conds {
                    self.fields[field as usize].add(c, hit);
                }
                if leaf.absent_ok() {
                    br.absent.push((slot as u8, field));
                } else {
                    br.required |= 1 << slot;
                }
                br.leaves.push((field, leaf.clone()));
            }
            if br.required == 0 {
                self.always.push(bid);
            }
            self.branches[bid as usize] = Some(br);
            self.branches_of[name_id as usize].push(bid);
        }
        Ok(())
    }

    /// Removes every pattern held under `name`; false when there was none.
    pub fn remove_pattern(&mut self, name: &N) -> bool {
        let Some(id) = self.name_ids.remove(name) else {
            return false;
        };
        for bid in std::mem::take(&mut self.branches_of[id as usize]) {
            if let Some(br) = self.branches[bid as usize].take() {
                for (field, leaf) in &br.leaves {
                    for c in &leaf.conds {
                        self.fields[*field as usize].remove(c, bid);
                    }
                }
                if br.required == 0 {
                    self.always.retain(|b| *b != bid);
                }
            }
            self.free_branches.push(bid);
        }
        self.names[id as usize] = None;
        self.free_names.push(id);
        true
    }

    /// The distinct names whose patterns match the event, in no particular order.
    pub fn matches_for_event(&self, event_json: &[u8]) -> Result<Vec<N>, EventError> {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => self.run(event_json, &mut s),
            Err(_) => self.run(event_json, &mut Scratch::default()),
        })
    }

    fn run(&self, event: &[u8], s: &mut Scratch) -> Result<Vec<N>, EventError> {
        s.begin(self.branches.len(), self.fields.len(), self.names.len());
        let gen = s.gen;
        let mut scanner = std::mem::take(&mut s.scanner);
        let mut fold = std::mem::take(&mut s.fold);
        let nodes: &[Node] = &self.nodes;
        let result = scanner.scan(event, nodes, &mut |node, v, trail| {
            let field = nodes[node as usize].field;
            s.present[field as usize] = gen;
            let arrayed = !trail.is_empty();
            // Only leaves inside arrays of objects need their position kept.
            let leaf = if arrayed {
                let start = s.steps.len() as u32;
                s.steps.extend_from_slice(trail);
                s.leaves.push((start, trail.len() as u32));
                (s.leaves.len() - 1) as u32
            } else {
                NO_LEAF
            };
            let (stamp, mask, arr, touched, hits) = (
                &mut s.stamp,
                &mut s.mask,
                &mut s.arrayed,
                &mut s.touched,
                &mut s.hits,
            );
            self.fields[field as usize].probe(v, &mut fold, &mut |hit| {
                let b = (hit >> 6) as usize;
                if stamp[b] != gen {
                    stamp[b] = gen;
                    mask[b] = 0;
                    arr[b] = false;
                    touched.push(b as u32);
                }
                mask[b] |= 1 << (hit & 63);
                arr[b] |= arrayed;
                hits.push((hit, leaf));
            });
        });
        s.scanner = scanner;
        s.fold = fold;
        result?;
        for i in 0..s.touched.len() {
            let b = s.touched[i] as usize;
            let Some(br) = &self.branches[b] else {
                continue;
            };
            if s.mask[b] & br.required != br.required {
                continue;
            }
            if !self.absent_ok(br, s.mask[b], s) {
                continue;
            }
            if s.arrayed[b] && !consistent(b as u32, s) {
                continue;
            }
            let n = br.name as usize;
            if s.name_stamp[n] != gen {
                s.name_stamp[n] = gen;
                s.out.push(br.name);
            }
        }
        for &b in &self.always {
            if s.stamp[b as usize] == gen {
                continue; // already decided above
            }
            let Some(br) = &self.branches[b as usize] else {
                continue;
            };
            if self.absent_ok(br, 0, s) {
                let n = br.name as usize;
                if s.name_stamp[n] != gen {
                    s.name_stamp[n] = gen;
                    s.out.push(br.name);
                }
            }
        }
        Ok(s.out
            .iter()
            .filter_map(|&n| self.names[n as usize].clone())
            .collect())
    }

    /// Slots that may be satisfied by absence: each is either hit or its field is absent.
    fn absent_ok(&self, br: &Branch, mask: u64, s: &Scratch) -> bool {
        br.absent
            .iter()
            .all(|&(slot, field)| mask & (1 << slot) != 0 || s.present[field as usize] != s.gen)
    }
}

/// Whether one hit per hit slot can be chosen so that all chosen leaves agree on the
/// element index of every array they share.
fn consistent(branch: u32, s: &Scratch) -> bool {
    let mut per_slot: Vec<Vec<&[Step]>> = Vec::new();
    let mut slots: Vec<u8> = Vec::new();
    for &(hit, leaf) in &s.hits {
        if hit >> 6 != branch {
            continue;
        }
        let slot = (hit & 63) as u8;
        let trail = match s.leaves.get(leaf as usize) {
            Some(&(a, n)) => &s.steps[a as usize..(a + n) as usize],
            None => &[][..],
        };
        let i = match slots.iter().position(|x| *x == slot) {
            Some(i) => i,
            None => {
                slots.push(slot);
                per_slot.push(Vec::new());
                slots.len() - 1
            }
        };
        if !per_slot[i].contains(&trail) {
            per_slot[i].push(trail);
        }
    }
    // Most constrained slots first keeps the search small.
    per_slot.sort_by_key(Vec::len);
    let mut chosen: Vec<&[Step]> = Vec::with_capacity(per_slot.len());
    let mut budget = MAX_ARRAY_SEARCH_STEPS;
    search(&per_slot, &mut chosen, &mut budget)
}

pub(crate) fn search<'a>(
    slots: &[Vec<&'a [Step]>],
    chosen: &mut Vec<&'a [Step]>,
    budget: &mut usize,
) -> bool {
    let Some((first, rest)) = slots.split_first() else {
        return true;
    };
    for &cand in first {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if chosen.iter().all(|c| compatible(c, cand)) {
            chosen.push(cand);
            if search(rest, chosen, budget) {
                return true;
            }
            chosen.pop();
        }
    }
    false
}
