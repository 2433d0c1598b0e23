/// Rendezvous (highest-random-weight) hashing: which peers hold the replicas of a key.
///
/// Every peer `p` gets the weight `weight(of: key, at: p)` for a key; the `count` highest
/// weights (ties: lower `PeerID`) are the key's replicas. Every peer computes the same answer
/// from the same member list, with no coordination and no table, and a change of membership
/// moves only what it must: removing a peer changes only the keys it was a replica of (each
/// gains the next peer in its ranking), adding one moves about `count / n` of the keys to it.
public enum Rendezvous {
    /// The weight of `peer` for `key`: a 64-bit mix of both, so that rankings of different keys
    /// are independent. Both inputs are mixed before they are combined, so structured ids
    /// (small peer numbers, sequential keys) do not correlate.
    @inline(__always)
    public static func weight(of key: UInt64, at peer: PeerID) -> UInt64 {
        mix(mix(key) ^ rotl(mix(peer.raw ^ 0x5045_4552_0000_0000), 29))
    }

    /// The `count` replicas of `key` among `peers`, highest weight first (ties: lower `PeerID`).
    /// The order of `peers` does not matter and duplicates are ignored. Fewer than `count` peers
    /// give all of them (ranked). O(n·count): a bounded insertion into the top list, no sort of
    /// all `n` peers.
    public static func replicas(of key: UInt64, among peers: [PeerID], count: Int) -> [PeerID] {
        guard count > 0 else { return [] }
        var top: [(weight: UInt64, peer: PeerID)] = []
        top.reserveCapacity(min(count, peers.count) + 1)
        for p in peers {
            let w = weight(of: key, at: p)
            if top.count == count, let last = top.last, !ranksBefore(w, p, last.weight, last.peer) { continue }
            var i = top.count
            while i > 0, ranksBefore(w, p, top[i - 1].weight, top[i - 1].peer) { i -= 1 }
            // The same peer has the same weight, so a duplicate would sit right before `i`.
            if i > 0, top[i - 1].peer == p { continue }
            top.insert((w, p), at: i)
            if top.count > count { top.removeLast() }
        }
        return top.map(\.peer)
    }

    /// Whether (wa, a) ranks before (wb, b): higher weight first, ties to the lower peer.
    @inline(__always)
    private static func ranksBefore(_ wa: UInt64, _ a: PeerID, _ wb: UInt64, _ b: PeerID) -> Bool {
        wa != wb ? wa > wb : a < b
    }

    /// The SplitMix64 finalizer (a bijection with full avalanche).
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}
