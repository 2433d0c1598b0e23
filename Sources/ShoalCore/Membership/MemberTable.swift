/// What a peer knows of every member, in contiguous storage: an open-addressing index from the
/// 64-bit peer id to a dense slot (a multiplicative hash; no per-lookup SipHash, which dominated
/// the simulator's profile), the members' states by slot, and each member's gossip state.
///
/// Members are never removed (a dead or departed member keeps its slot: its incarnation is what
/// lets a later refutation win), so slots are stable and the index never needs tombstones.
struct MemberTable: Sendable {
    private static let empty = UInt64.max

    private var keys: [UInt64]
    private var slotOfKey: [Int32]
    private var mask: Int
    private var shift: UInt64
    /// Member states by slot.
    private(set) var infos: [MemberInfo] = []
    /// Times each member's update was piggybacked since it was last queued; -1 when not queued.
    private(set) var gossipSent: [Int32] = []
    /// Slots queued for gossip (any order: selection is by the total order (sent, peer)).
    private(set) var queued: [Int32] = []
    /// Each slot's position in `queued`, or -1.
    private var queuePosition: [Int32] = []

    init() {
        keys = Array(repeating: MemberTable.empty, count: 16)
        slotOfKey = Array(repeating: -1, count: 16)
        mask = 15
        shift = 64 - 4
    }

    var count: Int { infos.count }

    private func bucket(_ raw: UInt64) -> Int { Int(truncatingIfNeeded: (raw &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// The slot of `peer`, if it is known.
    func slot(of peer: PeerID) -> Int? {
        var b = bucket(peer.raw)
        while true {
            let k = keys[b]
            if k == peer.raw { return Int(slotOfKey[b]) }
            if k == MemberTable.empty { return nil }
            b = (b + 1) & mask
        }
    }

    subscript(peer: PeerID) -> MemberInfo? {
        slot(of: peer).map { infos[$0] }
    }

    /// Stores `info` under its peer (a new slot for a new peer); returns its slot.
    @discardableResult
    mutating func store(_ info: MemberInfo) -> Int {
        precondition(info.peer.raw != MemberTable.empty, "peer id \(info.peer.raw) is reserved")
        if let s = slot(of: info.peer) {
            infos[s] = info
            return s
        }
        if (infos.count + 1) * 2 > keys.count { grow() }
        let s = infos.count
        infos.append(info)
        gossipSent.append(-1)
        queuePosition.append(-1)
        place(info.peer.raw, slot: Int32(s))
        return s
    }

    private mutating func place(_ raw: UInt64, slot: Int32) {
        var b = bucket(raw)
        while keys[b] != MemberTable.empty { b = (b + 1) & mask }
        keys[b] = raw
        slotOfKey[b] = slot
    }

    private mutating func grow() {
        let capacity = keys.count * 2
        keys = Array(repeating: MemberTable.empty, count: capacity)
        slotOfKey = Array(repeating: -1, count: capacity)
        mask = capacity - 1
        shift = UInt64(64 - capacity.trailingZeroBitCount)
        for (s, info) in infos.enumerated() { place(info.peer.raw, slot: Int32(s)) }
    }

    // MARK: Gossip queue

    /// Queues (or re-queues, with its count reset) the member in `slot` for gossip.
    mutating func queue(_ slot: Int) {
        gossipSent[slot] = 0
        if queuePosition[slot] < 0 {
            queuePosition[slot] = Int32(queued.count)
            queued.append(Int32(slot))
        }
    }

    /// Removes the member in `slot` from the gossip queue.
    mutating func unqueue(_ slot: Int) {
        let p = Int(queuePosition[slot])
        guard p >= 0 else { return }
        let last = queued.removeLast()
        if p < queued.count {
            queued[p] = last
            queuePosition[Int(last)] = Int32(p)
        }
        queuePosition[slot] = -1
        gossipSent[slot] = -1
    }

    mutating func markSent(_ slot: Int) {
        gossipSent[slot] += 1
    }

    /// Bytes held by the table's arrays (capacity times stride).
    var estimatedHeapBytes: Int {
        HeapSize.array(keys) + HeapSize.array(slotOfKey) + HeapSize.array(infos) + HeapSize.array(gossipSent)
            + HeapSize.array(queued) + HeapSize.array(queuePosition)
    }
}

/// Heap bytes of standard collections, computed from their capacity (for footprint estimates).
enum HeapSize {
    static func array<T>(_ a: [T]) -> Int { a.capacity * MemoryLayout<T>.stride }

    /// A native hash table keeps at most 3/4 of its buckets full; a bucket count is a power of two.
    static func buckets(capacity: Int) -> Int {
        guard capacity > 0 else { return 0 }
        var b = 1
        while b * 3 / 4 < capacity { b *= 2 }
        return b
    }

    static func set<T>(_ s: Set<T>) -> Int {
        let b = buckets(capacity: s.capacity)
        return b * MemoryLayout<T>.stride + b / 8
    }

    static func dictionary<K, V>(_ d: [K: V]) -> Int {
        let b = buckets(capacity: d.capacity)
        return b * (MemoryLayout<K>.stride + MemoryLayout<V>.stride) + b / 8
    }
}
