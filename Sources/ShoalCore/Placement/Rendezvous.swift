/// Rendezvous (highest-random-weight) hashing: every peer gets a weight for a key, the highest
/// weights win. Removing a peer moves only the keys it held; adding one moves about 1/n of them.
public enum Rendezvous {
    public static func weight(_ key: UInt64, _ peer: PeerID) -> UInt64 {
        var z = key ^ (peer.raw << 29 | peer.raw >> 35) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The `count` peers with the highest weight for `key`, highest first (ties: lower peer).
    public static func replicas(of key: UInt64, among peers: [PeerID], count: Int) -> [PeerID] {
        var best: [(weight: UInt64, peer: PeerID)] = []
        best.reserveCapacity(count + 1)
        for p in peers {
            let w = weight(key, p)
            let entry = (weight: w, peer: p)
            let before = { (a: (weight: UInt64, peer: PeerID), b: (weight: UInt64, peer: PeerID)) in
                a.weight != b.weight ? a.weight > b.weight : a.peer < b.peer
            }
            if best.count == count, let last = best.last, !before(entry, last) { continue }
            if best.contains(where: { $0.peer == p }) { continue }
            let at = best.firstIndex { before(entry, $0) } ?? best.count
            best.insert(entry, at: at)
            if best.count > count { best.removeLast() }
        }
        return best.map(\.peer)
    }
}
