//! RFC 9162 Merkle trees: leaf and node hashes, the ranges a proof needs, and proof
//! verification. Pure: callers fetch hashes from wherever they keep them.
//!
//! A tree over `n` leaves has the root MTH(D[0:n]) of RFC 9162 section 2.1.1: the empty
//! tree hashes to SHA-256(""), a leaf to SHA-256(0x00 ‖ data), a node to
//! SHA-256(0x01 ‖ left ‖ right), splitting at the largest power of two below `n`.
//!
//! Every range the RFC's recursion visits starts at a multiple of its own split, so its
//! hash is a right fold over *perfect* subtrees (a power-of-two count of leaves starting
//! at a multiple of that count): [`perfect_parts`]. A store that keeps the roots of
//! complete perfect subtrees answers any proof with O(log² n) lookups and no rehashing
//! of leaves. [`inclusion_ranges`] and [`consistency_ranges`] name the ranges a proof is
//! made of, in proof order; [`verify_inclusion`] and [`verify_consistency`] check proofs
//! the way an auditor does (RFC 9162 sections 2.1.3.2 and 2.1.4.2).

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// A perfect subtree: `2^level` leaves starting at leaf `index * 2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Perfect {
    pub level: u32,
    pub index: u64,
}

/// The perfect subtrees whose right fold is MTH(D[start:end]), largest first. `start`
/// must be a multiple of the range's split (true of every range a proof uses).
pub fn perfect_parts(start: u64, end: u64) -> Vec<Perfect> {
    let mut parts = Vec::new();
    let mut at = start;
    while at < end {
        let remaining = end - at;
        let level = 63 - remaining.leading_zeros();
        parts.push(Perfect {
            level,
            index: at >> level,
        });
        at += 1 << level;
    }
    parts
}

/// MTH of a range from the roots of its [`perfect_parts`], in that order.
pub fn fold_parts(parts: &[Hash]) -> Hash {
    let mut iter = parts.iter().rev();
    let Some(last) = iter.next() else {
        return empty_root();
    };
    iter.fold(*last, |right, left| node_hash(left, &right))
}

/// The ranges `[start, end)` whose MTHs make the inclusion proof of leaf `index` in a
/// tree of `size` leaves, in proof order (RFC 9162 PATH). Empty when `index ≥ size`.
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    if index >= size {
        return ranges;
    }
    // Walk down from the root, then reverse: the proof lists siblings bottom-up.
    let (mut start, mut end, mut m) = (0, size, index);
    while end - start > 1 {
        let k = split(end - start);
        if m < k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
            m -= k;
        }
    }
    ranges.reverse();
    ranges
}

/// The ranges whose MTHs make the consistency proof from a tree of `old` leaves to one
/// of `new` leaves, in proof order (RFC 9162 PROOF / SUBPROOF). Empty when `old` is 0,
/// equals `new`, or exceeds it.
pub fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    if old == 0 || old >= new {
        return ranges;
    }
    // SUBPROOF(m, D[start:end], b), iteratively; pushed top-down, so reversed at the end.
    let (mut start, mut end, mut m, mut whole) = (0u64, new, old, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                ranges.push((start, end));
            }
            break;
        }
        let k = split(n);
        if m <= k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
            m -= k;
            whole = false;
        }
    }
    ranges.reverse();
    ranges
}

/// RFC 9162 section 2.1.3.2: does `proof` show leaf `leaf` at `index` in the tree of
/// `size` leaves with root `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// RFC 9162 section 2.1.4.2: does `proof` show that the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`?
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        // Every tree extends the empty one; there is nothing to prove.
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    f_r == *old_root && s_r == *new_root && s_n == 0
}

/// The right edge of a growing tree: the complete perfect subtrees still waiting for a
/// right sibling, one per set bit of the size. Appending leaves to it yields every
/// perfect subtree they complete, so a store can keep them as the tree grows.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// `pending[l]`: the root of perfect subtree `(l, (size >> l) - 1)` when bit `l` of
    /// `size` is set.
    pending: Vec<Option<Hash>>,
}

impl Frontier {
    /// The perfect subtrees a frontier of `size` leaves needs (see [`Frontier::resume`]).
    pub fn needed(size: u64) -> Vec<Perfect> {
        (0..64)
            .filter(|level| (size >> level) & 1 == 1)
            .map(|level| Perfect {
                level,
                index: (size >> level) - 1,
            })
            .collect()
    }

    /// Resumes a tree of `size` leaves from the roots of [`Frontier::needed`] (any order);
    /// `None` if one is missing.
    pub fn resume(size: u64, roots: &[(Perfect, Hash)]) -> Option<Self> {
        let mut pending = vec![None; 64];
        for part in Self::needed(size) {
            let (_, hash) = roots.iter().find(|(p, _)| *p == part)?;
            pending[part.level as usize] = Some(*hash);
        }
        Some(Self { size, pending })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; returns the perfect subtrees of two or more leaves it completes.
    pub fn push(&mut self, leaf: Hash) -> Vec<(Perfect, Hash)> {
        if self.pending.len() < 64 {
            self.pending.resize(64, None);
        }
        let mut completed = Vec::new();
        let mut hash = leaf;
        let mut level = 0usize;
        while let Some(left) = self.pending.get_mut(level).and_then(Option::take) {
            hash = node_hash(&left, &hash);
            level += 1;
            let index = ((self.size + 1) >> level) - 1;
            completed.push((
                Perfect {
                    level: level as u32,
                    index,
                },
                hash,
            ));
        }
        if let Some(slot) = self.pending.get_mut(level) {
            *slot = Some(hash);
        }
        self.size += 1;
        completed
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let parts: Vec<Hash> = self.pending.iter().rev().flatten().copied().collect();
        fold_parts(&parts)
    }
}

/// A whole tree in memory: what an offline verifier or an export check builds.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[0]` are the leaf hashes; `levels[l][i]` the root of perfect subtree
    /// `(l, i)`, kept as soon as it is complete.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash, completing the perfect subtrees it closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut level = 0;
        let mut hash = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let count = self.levels[level].len();
            if count % 2 == 1 {
                break;
            }
            hash = node_hash(
                &self.levels[level][count - 2],
                &self.levels[level][count - 1],
            );
            level += 1;
        }
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The root of a complete perfect subtree.
    pub fn perfect(&self, part: Perfect) -> Option<Hash> {
        let level = usize::try_from(part.level).ok()?;
        let index = usize::try_from(part.index).ok()?;
        self.levels.get(level)?.get(index).copied()
    }

    /// MTH(D[start:end]) for a range a proof uses.
    pub fn range_root(&self, start: u64, end: u64) -> Option<Hash> {
        let parts: Option<Vec<Hash>> = perfect_parts(start, end)
            .into_iter()
            .map(|p| self.perfect(p))
            .collect();
        Some(fold_parts(&parts?))
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Option<Hash> {
        if size == 0 {
            return Some(empty_root());
        }
        (size <= self.size()).then(|| self.range_root(0, size))?
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if size > self.size() || index >= size {
            return None;
        }
        inclusion_ranges(index, size)
            .into_iter()
            .map(|(a, b)| self.range_root(a, b))
            .collect()
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        if new > self.size() || old > new {
            return None;
        }
        consistency_ranges(old, new)
            .into_iter()
            .map(|(a, b)| self.range_root(a, b))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH straight from RFC 9162 section 2.1.1, recursively, for reference.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// PATH(m, D[n]) straight from the RFC.
    fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split(n as u64) as usize;
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    /// SUBPROOF(m, D[n], b) straight from the RFC.
    fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole { Vec::new() } else { vec![mth(leaves)] };
        }
        let k = split(n as u64) as usize;
        if m <= k {
            let mut p = subproof(m, &leaves[..k], whole);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("event {i}").as_bytes()))
            .collect()
    }

    fn tree(leaves: &[Hash]) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for leaf in leaves {
            tree.push(*leaf);
        }
        tree
    }

    #[test]
    fn known_answers() {
        // SHA-256("") and SHA-256(0x00): the empty tree and the empty leaf.
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn roots_and_proofs_match_the_rfc_definitions() {
        let all = leaves(70);
        let tree = tree(&all);
        for n in 0..=all.len() {
            let root = tree.root(n as u64).expect("root");
            assert_eq!(root, mth(&all[..n]), "root of {n}");
            for m in 0..n {
                let proof = tree.inclusion_proof(m as u64, n as u64).expect("proof");
                assert_eq!(proof, path(m, &all[..n]), "PATH({m}, {n})");
                assert!(verify_inclusion(m as u64, n as u64, &all[m], &proof, &root));
            }
            for m in 1..=n {
                let proof = tree.consistency_proof(m as u64, n as u64).expect("proof");
                if m < n {
                    assert_eq!(proof, subproof(m, &all[..n], true), "PROOF({m}, {n})");
                }
                let old = tree.root(m as u64).expect("old root");
                assert!(
                    verify_consistency(m as u64, n as u64, &old, &root, &proof),
                    "consistency {m} -> {n}"
                );
            }
        }
    }

    #[test]
    fn corrupted_proofs_are_refused() {
        let all = leaves(38);
        let tree = tree(&all);
        let (m, n) = (13u64, 37u64);
        let root = tree.root(n).expect("root");
        let proof = tree.inclusion_proof(m, n).expect("proof");
        let leaf = all[m as usize];
        for i in 0..proof.len() {
            let mut changed = proof.clone();
            changed[i][0] ^= 1;
            assert!(
                !verify_inclusion(m, n, &leaf, &changed, &root),
                "hash {i} changed"
            );
            let mut removed = proof.clone();
            removed.remove(i);
            assert!(
                !verify_inclusion(m, n, &leaf, &removed, &root),
                "hash {i} removed"
            );
        }
        let mut longer = proof.clone();
        longer.push(root);
        assert!(!verify_inclusion(m, n, &leaf, &longer, &root));
        // A proof for one size does not prove inclusion in the tree of another.
        let bigger = tree.root(n + 1).expect("root");
        assert!(
            !verify_inclusion(m, n + 1, &leaf, &proof, &bigger),
            "wrong size"
        );
        assert!(
            !verify_inclusion(m + 1, n, &leaf, &proof, &root),
            "wrong index"
        );
        assert!(
            !verify_inclusion(m, n, &all[0], &proof, &root),
            "wrong leaf"
        );

        let old_size = 20u64;
        let old = tree.root(old_size).expect("old");
        let proof = tree.consistency_proof(old_size, n).expect("proof");
        assert!(verify_consistency(old_size, n, &old, &root, &proof));
        for i in 0..proof.len() {
            let mut changed = proof.clone();
            changed[i][5] ^= 0x80;
            assert!(!verify_consistency(old_size, n, &old, &root, &changed));
            let mut removed = proof.clone();
            removed.remove(i);
            assert!(!verify_consistency(old_size, n, &old, &root, &removed));
        }
        assert!(
            !verify_consistency(old_size + 1, n, &old, &root, &proof),
            "wrong size"
        );
        let smaller = tree.root(n - 1).expect("root");
        assert!(
            !verify_consistency(old_size, n - 1, &old, &smaller, &proof),
            "wrong size"
        );
        let forked = {
            let mut other = all.clone();
            other[3] = leaf_hash(b"rewritten history");
            self::tree(&other).root(old_size).expect("forked")
        };
        assert!(
            !verify_consistency(old_size, n, &forked, &root, &proof),
            "a rewritten prefix"
        );
    }

    #[test]
    fn a_resumed_frontier_completes_the_same_subtrees() {
        let all = leaves(45);
        let whole = tree(&all);
        let mut frontier = Frontier::default();
        let mut stored: Vec<(Perfect, Hash)> = Vec::new();
        for (i, leaf) in all.iter().enumerate() {
            if i == 23 {
                // Resume from what a store kept, as a new process would.
                let needed: Vec<(Perfect, Hash)> = Frontier::needed(23)
                    .into_iter()
                    .map(|p| (p, whole.perfect(p).expect("kept")))
                    .collect();
                frontier = Frontier::resume(23, &needed).expect("resume");
            }
            stored.push((
                Perfect {
                    level: 0,
                    index: i as u64,
                },
                *leaf,
            ));
            stored.extend(frontier.push(*leaf));
            assert_eq!(frontier.root(), mth(&all[..=i]));
        }
        for (part, hash) in stored {
            assert_eq!(whole.perfect(part), Some(hash), "{part:?}");
        }
        assert!(Frontier::resume(5, &[]).is_none());
    }

    #[test]
    fn perfect_parts_cover_the_range() {
        assert_eq!(
            perfect_parts(0, 7),
            vec![
                Perfect { level: 2, index: 0 },
                Perfect { level: 1, index: 2 },
                Perfect { level: 0, index: 6 }
            ]
        );
        assert_eq!(perfect_parts(8, 12), vec![Perfect { level: 2, index: 2 }]);
        assert!(perfect_parts(5, 5).is_empty());
    }
}
