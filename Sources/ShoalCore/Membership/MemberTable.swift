/// What a peer knows of every member, in compact contiguous storage.
///
/// - A 16-byte record per member, by dense slot: the peer id, a 32-bit incarnation, the status and
///   how many times its update was gossiped.
/// - An open-addressing index from the 64-bit peer id to the slot (a multiplicative hash; no
///   per-lookup SipHash, which dominated the simulator's profile). Its entries are slot + 1 in 16
///   bits while the table holds fewer than 65,535 members, in 32 bits beyond; the key is the
///   record's own peer id, so the index stores no keys.
/// - Load reports (a 32-bit `loadVersion` and the `PeerLoad`) in side arrays that exist only once
///   some member has reported a load: a cluster that gossips no load pays nothing for them.
/// - A digest of the whole view for anti-entropy: 64 sums of per-member hashes, kept up to date by
///   `store` (see `digest(buckets:)`).
/// - The gossip queue: queued slots in lanes by times sent, first in first out within a lane (see
///   `takeGossip`), costing nothing when nothing is queued.
///
/// Members are never removed (a dead or departed member keeps its slot: its incarnation is what
/// lets a later refutation win), so slots are stable and the index never needs tombstones.
///
/// Incarnations and load versions are kept in 32 bits: the machine stores, sends and accepts none
/// above `MemberTable.counterLimit` (2^32 - 2).
struct MemberTable: Sendable {
    /// One member's status as stored: 16 bytes.
    struct Record: Sendable {
        var peer: UInt64
        var incarnation: UInt32
        var status: MemberStatus
        /// Times the member's update was piggybacked since it was last queued (its gossip lane), or
        /// `notQueued`.
        var sent: UInt8 = MemberTable.notQueued
    }

    static let notQueued: UInt8 = 0xFF
    /// Marks a member picked by `takeGossip` while the lanes are scanned.
    private static let picking: UInt8 = 0xFE
    /// Highest retransmit limit the queue supports (the lane of a member is a byte).
    static let maxSends = 0xFD

    /// The largest incarnation or load version stored, sent or accepted.
    static let counterLimit = UInt64(UInt32.max) - 1

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

    /// Gossip lanes by times sent. A lane entry is live while its member's `sent` equals the lane;
    /// re-queuing a member leaves its old entry behind, skipped and dropped when reached.
    private var lanes: [Lane] = []
    /// Members queued for gossip.
    private(set) var queuedCount = 0
    /// Entries in all lanes, live or left behind (compacted when they outnumber live ones).
    private var laneEntries = 0

    private struct Lane: Sendable {
        var slots: [Int32] = []
        var head = 0
        var isEmpty: Bool { head == slots.count }
    }

    /// Sums (wrapping) of `digestHash` over the members of each of the 64 digest buckets.
    private var digestSums: [UInt64] = Array(repeating: 0, count: MemberTable.digestBuckets)

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
            info.incarnation <= Self.counterLimit && info.loadVersion <= Self.counterLimit,
            "\(info.peer): incarnation \(info.incarnation) or load version \(info.loadVersion) does not fit 32 bits")
        let s: Int
        if let existing = knownSlot {
            s = existing
            digestSums[Self.digestBucket(info.peer.raw)] &-= digestHash(at: s)
            records[s].incarnation = UInt32(info.incarnation)
            records[s].status = info.status
        } else {
            if (records.count + 1) * 2 > mask + 1 { grow() }
            s = records.count
            records.append(Record(peer: info.peer.raw, incarnation: UInt32(info.incarnation), status: info.status))
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
        digestSums[Self.digestBucket(info.peer.raw)] &+= digestHash(at: s)
        return s
    }

    // MARK: Digest

    static let digestBuckets = 64

    /// The digest bucket of a peer id, in [0, 64): the top bits of a multiplicative hash.
    private static func digestBucket(_ raw: UInt64) -> Int {
        Int(truncatingIfNeeded: (raw &* 0xD6E8_FEB8_6659_FD93) >> 58)
    }

    /// A hash of what anti-entropy compares about the member in `slot`: its id, incarnation, status
    /// and load version. The same function on every peer.
    private func digestHash(at slot: Int) -> UInt64 {
        let r = records[slot]
        let version = loadVersions.isEmpty ? 0 : UInt64(loadVersions[slot])
        let state = (UInt64(r.incarnation) << 32 | version) &+ UInt64(r.status.rawValue) &* 0x9E37_79B9_7F4A_7C15
        return Self.mix(r.peer ^ Self.mix(state))
    }

    private static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The view's digest in `n` buckets (a power of two, 1 to 64): bucket `i` sums the members
    /// whose digest bucket divided by `64 / n` is `i`. Two views with equal digests hold the same
    /// (incarnation, status, load version) for the same members, but for a 64-bit hash collision.
    func digest(buckets n: Int) -> [UInt64] {
        precondition(n >= 1 && n <= Self.digestBuckets && n & (n - 1) == 0, "digest of \(n) buckets")
        let shift = (Self.digestBuckets / n).trailingZeroBitCount
        var d = [UInt64](repeating: 0, count: n)
        for i in 0..<Self.digestBuckets { d[i >> shift] &+= digestSums[i] }
        return d
    }

    /// The members (current state, at most `limit`) in the buckets where this view's digest differs
    /// from `other`, in slot order from `start` round to `start - 1` (a caller that draws `start` at
    /// random sends every member in turn when the bound cuts the list); nil if `other` is not a
    /// digest of 1 to 64 buckets (a power of two).
    func members(differingFrom other: [UInt64], limit: Int, start: Int) -> [MemberUpdate]? {
        let n = other.count
        guard n >= 1, n <= Self.digestBuckets, n & (n - 1) == 0 else { return nil }
        let mine = digest(buckets: n)
        var differing: UInt64 = 0
        for i in 0..<n where mine[i] != other[i] { differing |= 1 << UInt64(i) }
        guard differing != 0, limit > 0 else { return [] }
        let shift = (Self.digestBuckets / n).trailingZeroBitCount
        var out: [MemberUpdate] = []
        let total = records.count
        for i in 0..<total {
            let s = (start + i) % total
            guard differing & (1 << UInt64(Self.digestBucket(records[s].peer) >> shift)) != 0 else { continue }
            out.append(info(at: s))
            if out.count >= limit { break }
        }
        return out
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
        let sent = records[slot].sent
        if sent == 0 { return }
        if sent == Self.notQueued { queuedCount += 1 }
        records[slot].sent = 0
        append(slot, lane: 0)
    }

    /// Removes every member from the gossip queue.
    mutating func unqueueAll() {
        for lane in lanes {
            for s in lane.slots[lane.head...] { records[Int(s)].sent = Self.notQueued }
        }
        releaseLanes()
    }

    /// Drops one member from a full queue: the longest-waiting one among the most-sent (so a
    /// member just queued goes only if every other is unsent too and queued after it).
    mutating func dropMostSent() {
        var lane = lanes.count - 1
        while lane >= 0 {
            while !lanes[lane].isEmpty {
                let s = Int(lanes[lane].slots[lanes[lane].head])
                lanes[lane].head += 1
                laneEntries -= 1
                if records[s].sent == UInt8(lane) {
                    records[s].sent = Self.notQueued
                    queuedCount -= 1
                    if queuedCount == 0 { releaseLanes() }
                    return
                }
            }
            lane -= 1
        }
    }

    /// Appends to `out` the current state of up to `k` queued members, the least-sent first and, at
    /// equal counts, the longest-waiting first; counts them as sent once more, retiring those sent
    /// `limit` times. The member in `skip` is counted but not appended (the caller already put it
    /// in the message). O(k) plus the entries left behind that it drops.
    mutating func takeGossip(_ k: Int, limit: Int, skip: Int?, into out: inout [MemberUpdate]) {
        guard k > 0, queuedCount > 0 else { return }
        let limit = min(max(1, limit), Self.maxSends)
        var picked: [(slot: Int32, lane: Int)] = []
        picked.reserveCapacity(min(k, queuedCount))
        var lane = 0
        while picked.count < k && lane < lanes.count {
            while picked.count < k && !lanes[lane].isEmpty {
                let s = lanes[lane].slots[lanes[lane].head]
                lanes[lane].head += 1
                laneEntries -= 1
                if records[Int(s)].sent == UInt8(lane) {
                    records[Int(s)].sent = Self.picking
                    picked.append((s, lane))
                }
            }
            compact(lane)
            lane += 1
        }
        for (s, lane) in picked {
            let slot = Int(s)
            if slot != skip { out.append(info(at: slot)) }
            let sent = lane + 1
            if sent >= limit {
                records[slot].sent = Self.notQueued
                queuedCount -= 1
            } else {
                records[slot].sent = UInt8(sent)
                append(slot, lane: sent)
            }
        }
        if queuedCount == 0 { releaseLanes() }
    }

    private mutating func append(_ slot: Int, lane: Int) {
        while lanes.count <= lane { lanes.append(Lane()) }
        lanes[lane].slots.append(Int32(slot))
        laneEntries += 1
        if laneEntries > 2 * queuedCount + 64 { rebuildLanes() }
    }

    /// Reclaims the consumed front of a lane. A burst (a join storm queues every member) moves from
    /// lane to lane, so a lane's storage is given back rather than kept at its peak.
    private mutating func compact(_ lane: Int) {
        let head = lanes[lane].head
        let count = lanes[lane].slots.count
        if head == count {
            lanes[lane].slots.removeAll(keepingCapacity: lanes[lane].slots.capacity <= 64)
            lanes[lane].head = 0
        } else if head >= 32 && head * 2 >= count {
            lanes[lane].slots = Array(lanes[lane].slots[head...])
            lanes[lane].head = 0
        }
    }

    /// Keeps only live entries, once each, in their order.
    private mutating func rebuildLanes() {
        var kept: [Lane] = []
        kept.reserveCapacity(lanes.count)
        for (c, lane) in lanes.enumerated() {
            var live = Lane()
            for s in lane.slots[lane.head...] where records[Int(s)].sent == UInt8(c) {
                records[Int(s)].sent = Self.picking
                live.slots.append(s)
            }
            kept.append(live)
        }
        for (c, lane) in kept.enumerated() {
            for s in lane.slots { records[Int(s)].sent = UInt8(c) }
        }
        lanes = kept
        laneEntries = lanes.reduce(0) { $0 + $1.slots.count }
    }

    private mutating func releaseLanes() {
        lanes = []
        laneEntries = 0
        queuedCount = 0
    }

    /// Bytes held by the table's arrays (capacity times stride).
    var estimatedHeapBytes: Int {
        HeapSize.array(records) + HeapSize.array(digestSums) + HeapSize.array(index16) + HeapSize.array(index32)
            + HeapSize.array(loadVersions)
            + HeapSize.array(loads) + HeapSize.array(lanes) + lanes.reduce(0) { $0 + HeapSize.array($1.slots) }
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
