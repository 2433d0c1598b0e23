/// What a peer knows of every member, in compact contiguous storage.
///
/// - A 16-byte record per member, by dense slot: the peer id, a 32-bit incarnation and the status.
/// - An open-addressing index from the 64-bit peer id to the slot (a multiplicative hash; no
///   per-lookup SipHash, which dominated the simulator's profile). Its entries are slot + 1 in 16
///   bits while the table holds fewer than 65,535 members, in 32 bits beyond; the key is the
///   record's own peer id, so the index stores no keys.
/// - Load reports (a 32-bit `loadVersion` and the `PeerLoad`) in side arrays that exist only once
///   some member has reported a load: a cluster that gossips no load pays nothing for them.
///
/// Members are never removed (a dead or departed member keeps its slot: its incarnation is what
/// lets a later refutation win), so slots are stable and the index never needs tombstones.
///
/// Incarnations and load versions are kept in 32 bits: `Membership` ignores an update that carries
/// one at or above `UInt32.max` (`MemberTable.maxCounter`), so every stored value, and its + 1, fits.
struct MemberTable: Sendable {
    /// One member's status as stored: 16 bytes.
    struct Record: Sendable {
        var peer: UInt64
        var incarnation: UInt32
        var status: MemberStatus
    }

    /// Incarnations and load versions must be below this to be stored.
    static let maxCounter = UInt64(UInt32.max)

    /// Member records by slot.
    private(set) var records: [Record] = []
    private var index16: [UInt16]
    private var index32: [UInt32] = []
    private var wide = false
    private var mask: Int
    private var shift: UInt64
    /// Load versions and loads by slot; both empty until a member has a load report.
    private var loadVersions: [UInt32] = []
    private var loads: [PeerLoad] = []

    /// Times each member's update was piggybacked since it was last queued; -1 when not queued.
    private(set) var gossipSent: [Int32] = []
    /// Slots queued for gossip (any order: selection is by the total order (sent, peer)).
    private(set) var queued: [Int32] = []
    /// Each slot's position in `queued`, or -1.
    private var queuePosition: [Int32] = []

    init() {
        index16 = Array(repeating: 0, count: 16)
        mask = 15
        shift = 64 - 4
    }

    var count: Int { records.count }

    private func bucket(_ raw: UInt64) -> Int { Int(truncatingIfNeeded: (raw &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// The slot of `peer`, if it is known.
    func slot(of peer: PeerID) -> Int? {
        let raw = peer.raw
        var b = bucket(raw)
        let mask = self.mask
        return records.withUnsafeBufferPointer { recs in
            if !wide {
                return index16.withUnsafeBufferPointer { ix in
                    while true {
                        let e = Int(ix[b])
                        if e == 0 { return nil }
                        if recs[e &- 1].peer == raw { return e &- 1 }
                        b = (b &+ 1) & mask
                    }
                }
            }
            return index32.withUnsafeBufferPointer { ix in
                while true {
                    let e = Int(ix[b])
                    if e == 0 { return nil }
                    if recs[e &- 1].peer == raw { return e &- 1 }
                    b = (b &+ 1) & mask
                }
            }
        }
    }

    subscript(peer: PeerID) -> MemberInfo? {
        slot(of: peer).map { info(at: $0) }
    }

    /// The full state of the member in `slot`.
    func info(at slot: Int) -> MemberInfo {
        let r = records[slot]
        return MemberInfo(
            peer: PeerID(raw: r.peer), status: r.status, incarnation: UInt64(r.incarnation),
            load: loads.isEmpty ? PeerLoad() : loads[slot],
            loadVersion: loadVersions.isEmpty ? 0 : UInt64(loadVersions[slot]))
    }

    func peer(at slot: Int) -> PeerID { PeerID(raw: records[slot].peer) }

    /// Stores `info` under its peer (a new slot for a new peer); returns its slot.
    @discardableResult
    mutating func store(_ info: MemberInfo) -> Int { store(info, at: slot(of: info.peer)) }

    /// Stores `info` in `knownSlot`, which must be `slot(of: info.peer)`.
    mutating func store(_ info: MemberInfo, at knownSlot: Int?) -> Int {
        precondition(
            info.incarnation < Self.maxCounter && info.loadVersion < Self.maxCounter,
            "\(info.peer): incarnation \(info.incarnation) or load version \(info.loadVersion) does not fit 32 bits")
        let record = Record(peer: info.peer.raw, incarnation: UInt32(info.incarnation), status: info.status)
        let s: Int
        if let existing = knownSlot {
            s = existing
            records[s] = record
        } else {
            if (records.count + 1) * 2 > mask + 1 { grow() }
            s = records.count
            records.append(record)
            gossipSent.append(-1)
            queuePosition.append(-1)
            if !loads.isEmpty {
                loads.append(PeerLoad())
                loadVersions.append(0)
            }
            place(info.peer.raw, slot: s)
        }
        let hasLoad = info.loadVersion != 0 || info.load != PeerLoad()
        if hasLoad && loads.isEmpty {
            loads = Array(repeating: PeerLoad(), count: records.count)
            loadVersions = Array(repeating: 0, count: records.count)
        }
        if !loads.isEmpty {
            loads[s] = info.load
            loadVersions[s] = UInt32(info.loadVersion)
        }
        return s
    }

    private mutating func place(_ raw: UInt64, slot: Int) {
        var b = bucket(raw)
        if slot + 1 > Int(UInt16.max) && !wide {
            wide = true
            index32 = index16.map { UInt32($0) }
            index16 = []
        }
        if wide {
            while index32[b] != 0 { b = (b + 1) & mask }
            index32[b] = UInt32(slot + 1)
        } else {
            while index16[b] != 0 { b = (b + 1) & mask }
            index16[b] = UInt16(slot + 1)
        }
    }

    private mutating func grow() {
        let capacity = (mask + 1) * 2
        mask = capacity - 1
        shift = UInt64(64 - capacity.trailingZeroBitCount)
        if wide {
            index32 = Array(repeating: 0, count: capacity)
        } else {
            index16 = Array(repeating: 0, count: capacity)
        }
        for s in records.indices { place(records[s].peer, slot: s) }
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
        HeapSize.array(records) + HeapSize.array(index16) + HeapSize.array(index32) + HeapSize.array(loadVersions)
            + HeapSize.array(loads) + HeapSize.array(gossipSent) + HeapSize.array(queued)
            + HeapSize.array(queuePosition)
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
