import Testing

@testable import ShoalCore

/// What the membership, stealing and placement machines receive from other peers may be anything:
/// every message kind with out-of-range counts, stamps, lists and ids is dropped (and counted),
/// clamped or ignored, never trapped on, no table grows without bound, and the machine still
/// answers a normal message afterwards. (The work machine's are in `WorkBoundaryTests`.)
@Suite("Machine boundaries")
struct MachineBoundaryTests {
    static func p(_ n: UInt64) -> PeerID { PeerID(raw: n) }
    static let t0 = Instant.zero
    static let reserved = PeerID(raw: .max)

    // MARK: Membership

    static func upd(_ n: UInt64, _ status: MemberStatus = .alive, _ inc: UInt64 = 0, loadVersion: UInt64 = 0)
        -> MemberUpdate
    {
        MemberUpdate(peer: p(n), status: status, incarnation: inc, load: PeerLoad(), loadVersion: loadVersion)
    }

    static func acks(_ out: [MembershipDirective], to peer: PeerID) -> [UInt64] {
        out.compactMap { if case .send(.ack(let seq, _), let to) = $0, to == peer { seq } else { nil } }
    }

    @Test func everyMembershipMessageKindOutOfRangeIsDroppedOrIgnoredAndTheTableStaysBounded() {
        var s = MembershipSettings()
        s.maxMembers = 50
        var m = Membership(id: Self.p(1), settings: s, seed: 1)
        _ = m.on(.start(seeds: []), now: Self.t0)
        _ = m.on(.message(.ping(sequence: 1, updates: []), from: Self.p(2)), now: Self.t0)  // p2 is known
        let enormous = (0..<100_000).map { Self.upd(1_000 + UInt64($0)) }
        let tooMany = (0..<51).map { Self.upd(2_000 + UInt64($0)) }
        // Out of range: each is dropped whole (nothing merged) and counted.
        let dropped: [(MembershipMessage, PeerID)] = [
            (.ping(sequence: .max, updates: enormous), Self.p(2)),
            (.ack(sequence: .max, updates: enormous), Self.p(2)),
            (.pingRequest(sequence: .max, target: Self.p(3), updates: enormous), Self.p(2)),
            (.join(updates: enormous), Self.p(2)),
            (.sync(digest: [1], updates: enormous), Self.p(2)),
            (.sync(digest: [], updates: []), Self.p(2)),
            (.sync(digest: [1, 2, 3], updates: []), Self.p(2)),
            (.sync(digest: Array(repeating: .max, count: 65), updates: []), Self.p(2)),
            (.sync(digest: Array(repeating: .max, count: 128), updates: []), Self.p(2)),
            (.sync(digest: Array(repeating: 0, count: 1 << 16), updates: []), Self.p(2)),
            (.pingRequest(sequence: 1, target: Self.reserved, updates: []), Self.p(2)),
            (.joinReply(members: tooMany), Self.p(2)),
            (.syncReply(members: tooMany), Self.p(2)),
            (.ping(sequence: 1, updates: []), Self.reserved),
        ]
        for (message, from) in dropped {
            #expect(m.on(.message(message, from: from), now: Self.t0).isEmpty, "\(message.updates.count) updates")
        }
        #expect(m.counters.messagesDropped == dropped.count)
        #expect(m.members.count == 2)
        // Malformed updates in a message of the right size: each ignored and counted, the rest merged.
        let limit = MemberTable.counterLimit
        let malformed = [
            Self.upd(5, .alive, .max), Self.upd(6, .dead, limit + 1), Self.upd(7, .alive, 0, loadVersion: .max),
            MemberUpdate(peer: Self.reserved, status: .alive, incarnation: 0), Self.upd(1, .suspect, .max),
            Self.upd(8, .suspect, limit),
        ]
        _ = m.on(.message(.ack(sequence: .max, updates: malformed), from: Self.p(2)), now: Self.t0)
        #expect(m.counters.updatesIgnored == 5)
        #expect(m.member(Self.reserved) == nil && m.member(Self.p(5)) == nil && m.member(Self.p(7)) == nil)
        #expect(m.member(Self.p(8))?.incarnation == limit)
        #expect(m.incarnation == 0)
        // Duplicate entries: one member.
        _ = m.on(.message(.join(updates: Array(repeating: Self.upd(9), count: 64)), from: Self.p(2)), now: Self.t0)
        #expect(m.members.filter { $0.peer == Self.p(9) }.count == 1)
        // The table stops at `maxMembers`, whatever the replies and senders bring.
        let fresh = (0..<50).map { Self.upd(3_000 + UInt64($0)) }
        _ = m.on(.message(.joinReply(members: fresh), from: Self.p(2)), now: Self.t0)
        _ = m.on(.message(.syncReply(members: fresh.map { Self.upd($0.peer.raw + 100, .suspect) }), from: Self.p(2)), now: Self.t0)
        var refusedSenders = 0
        for n in UInt64(10_000)..<10_010 {
            // An unknown sender is not added, but its ping is still answered.
            let out = m.on(.message(.ping(sequence: n, updates: []), from: Self.p(n)), now: Self.t0)
            if Self.acks(out, to: Self.p(n)) == [n] && m.member(Self.p(n)) == nil { refusedSenders += 1 }
        }
        #expect(refusedSenders == 10)
        #expect(m.members.count == 50)
        #expect(m.counters.membersRefused >= 50 + 10)
        #expect(m.counters.messagesDropped == dropped.count)
        // And it still works: a ping is acked, a suspicion of this peer is refuted.
        #expect(Self.acks(m.on(.message(.ping(sequence: 77, updates: []), from: Self.p(2)), now: Self.t0), to: Self.p(2)) == [77])
        _ = m.on(.message(.ping(sequence: 78, updates: [Self.upd(1, .suspect, 0)]), from: Self.p(2)), now: Self.t0)
        #expect(m.incarnation == 1)
        var total = MembershipCounters()
        total.add(m.counters)
        total.add(m.counters)
        #expect(total.messagesDropped == 2 * dropped.count && total.membersRefused == 2 * m.counters.membersRefused)
    }

    // MARK: Stealing

    static func stealTask(_ n: Int, inputs: [DataLocation] = [], outputs: [VersionRef] = []) -> StealableTask {
        StealableTask(id: TaskRef(WorkflowID(raw: 5), n), owner: p(9), catalogueKey: 1, inputs: inputs, outputs: outputs)
    }

    static func answer(_ out: [StealDirective]) -> [TaskRef]? {
        for d in out {
            if case .send(.reply(_, let g), _) = d { return g.map(\.id) }
            if case .send(.refused, _) = d { return [] }
        }
        return nil
    }

    static func ran(_ out: [StealDirective]) -> [TaskRef] {
        out.flatMap { d -> [TaskRef] in if case .run(let t) = d { t.map(\.id) } else { [] } }
    }

    @Test func everyStealMessageKindOutOfRangeIsDroppedOrClampedAndTheMachineStillWorks() {
        // Victim: requests with enormous lists are dropped; `max` is clamped (none, or at most the
        // batch), whatever its value.
        var v = StealMachine(id: Self.p(2), seed: 3)
        _ = v.on(.localState(freeSlots: 0, readyTasks: 40, catalogue: [1], holding: []), now: Self.t0)
        _ = v.on(.readyQueue((0..<40).map { Self.stealTask($0) }), now: Self.t0)
        let keys = Array(repeating: UInt64(1), count: 100_000)
        let held = (0..<5_000).map { VersionRef(WorkflowID(raw: 5), $0) }
        #expect(v.on(.stealRequest(from: Self.p(1), requestID: 1, max: 4, catalogue: keys, holding: []), now: Self.t0).isEmpty)
        #expect(v.on(.stealRequest(from: Self.p(1), requestID: 2, max: 4, catalogue: [1], holding: held), now: Self.t0).isEmpty)
        #expect(v.counters.messagesDropped == 2)
        #expect(Self.answer(v.on(.stealRequest(from: Self.p(1), requestID: 3, max: .min, catalogue: [1], holding: []), now: Self.t0)) == [])
        #expect(Self.answer(v.on(.stealRequest(from: Self.p(1), requestID: 4, max: 0, catalogue: [1], holding: []), now: Self.t0)) == [])
        let big = Self.answer(v.on(.stealRequest(from: Self.p(1), requestID: .max, max: .max, catalogue: [1], holding: []), now: Self.t0))
        #expect(big?.count == v.settings.stealBatchMax)
        // A duplicate is answered from the grant table, giving nothing new.
        #expect(Self.answer(v.on(.stealRequest(from: Self.p(1), requestID: .max, max: .max, catalogue: [1], holding: []), now: Self.t0)) == big)
        #expect(v.stealableQueue.count == 40 - v.settings.stealBatchMax)
        #expect(Self.answer(v.on(.stealRequest(from: Self.p(1), requestID: 5, max: 2, catalogue: [1], holding: []), now: Self.t0))?.count == 2)

        // Thief: a grant larger than any request, or of a task larger than a task can be, is dropped.
        var t = StealMachine(id: Self.p(1), seed: 7)
        let victim = MemberInfo(
            peer: Self.p(2), status: .alive, incarnation: 0,
            load: PeerLoad(freeSlots: 0, readyTasks: 100, catalogue: StealCatalogue.summary([1])))
        _ = t.on(.loadView([victim]), now: Self.t0)
        _ = t.on(.localState(freeSlots: 4, readyTasks: 0, catalogue: [1], holding: []), now: Self.t0)
        _ = t.on(.tick, now: Self.t0)
        let rid = t.outstandingRequests[0]
        let version = VersionRef(WorkflowID(raw: 5), 0)
        let location = DataLocation(datum: version, bytes: .max, holder: Self.p(2), checksum: .max)
        let hostile: [[StealableTask]] = [
            (0...t.settings.stealBatchMax).map { Self.stealTask($0) },
            [Self.stealTask(0, inputs: Array(repeating: location, count: WorkSettings.maxOutputsPerTask + 1))],
            [Self.stealTask(0, outputs: Array(repeating: version, count: WorkSettings.maxOutputsPerTask + 1))],
        ]
        for granted in hostile {
            #expect(t.on(.stealReply(from: Self.p(2), requestID: rid, granted: granted), now: Self.t0).isEmpty)
        }
        #expect(t.counters.messagesDropped == hostile.count)
        // Answers from a peer that was not asked, and for requests never sent, are ignored.
        #expect(t.on(.stealReply(from: Self.p(3), requestID: rid, granted: [Self.stealTask(1)]), now: Self.t0).isEmpty)
        #expect(t.on(.stealReply(from: Self.p(2), requestID: .max, granted: [Self.stealTask(1)]), now: Self.t0).isEmpty)
        #expect(t.on(.stealRefused(from: Self.p(2), requestID: .max), now: Self.t0).isEmpty)
        #expect(t.outstandingRequests == [rid])
        // And it still works: the real grant (a task whose fields are all at their maximum) runs.
        let odd = StealableTask(
            id: TaskRef(WorkflowID(raw: .max), Int(UInt32.max)), owner: Self.reserved, catalogueKey: .max, inputs: [location],
            outputs: [version])
        #expect(Self.ran(t.on(.stealReply(from: Self.p(2), requestID: rid, granted: [odd, odd]), now: Self.t0)) == [odd.id, odd.id])
        #expect(t.outstandingRequests.isEmpty && t.counters.stealsGranted == 1)
        #expect(t.counters.messagesDropped == hostile.count)
        var total = StealCounters()
        total.add(t.counters)
        total.add(v.counters)
        #expect(total.messagesDropped == hostile.count + 2)
    }

    // MARK: Placement

    static func placement(maxObjects: Int = 1 << 20) -> PlacementMachine {
        var s = PlacementSettings()
        s.replicas = 1
        s.writeQuorum = 1
        s.maxObjects = maxObjects
        var m = PlacementMachine(id: p(1), settings: s)
        _ = m.on(.members([p(1)]), now: t0)
        return m
    }

    static func object(_ key: UInt64, stamp: UInt64, writer: UInt64 = 9, content: UInt64 = 1, bytes: UInt64 = 8) -> StoredObject {
        StoredObject(key: key, version: ObjectVersion(stamp: stamp, writer: p(writer)), value: ObjectValue(bytes: bytes, content: content))
    }

    static func sends(_ out: [PlacementDirective]) -> [PlacementMessage] {
        out.compactMap { if case .send(let m, _) = $0 { m } else { nil } }
    }

    static func acknowledged(_ out: [PlacementDirective]) -> Bool {
        out.contains { if case .putAcknowledged = $0 { true } else { false } }
    }

    @Test func everyPlacementMessageKindWithAStampBeyondAnyClockIsDroppedAndAPutNeverLosesSilently() {
        var m = Self.placement()
        let beyond = ObjectVersion(stamp: ObjectVersion.maxStamp + 1, writer: Self.p(9))
        let top = ObjectVersion(stamp: .max, writer: Self.p(.max))
        let dropped: [PlacementMessage] = [
            .store(Self.object(7, stamp: .max)), .store(Self.object(7, stamp: ObjectVersion.maxStamp + 1)),
            .stored(key: 7, version: top), .offer(key: 7, version: beyond), .want(key: 7, version: top),
            .have(key: 7, version: beyond), .fetched(requestID: 1, key: 7, object: Self.object(7, stamp: .max)),
        ]
        for message in dropped { #expect(m.on(.message(message, from: Self.p(9)), now: Self.t0).isEmpty) }
        #expect(m.counters.messagesDropped == dropped.count && m.held(7) == nil)
        // Before, a store at UInt64.max from a higher writer made the next put here be acknowledged
        // while the held version stayed the other one. The largest stamp accepted still pins its
        // key, but a put of it now fails, with the reason.
        _ = m.on(.message(.store(Self.object(7, stamp: ObjectVersion.maxStamp, bytes: .max)), from: Self.p(9)), now: Self.t0)
        #expect(m.held(7)?.version.stamp == ObjectVersion.maxStamp)
        let pinned = m.on(.put(requestID: 1, key: 7, value: ObjectValue(bytes: 1, content: 2)), now: Self.t0)
        #expect(!Self.acknowledged(pinned))
        #expect(pinned.contains { if case .putFailed(1, 7, _) = $0 { true } else { false } })
        // One below: the put takes the largest stamp and wins.
        _ = m.on(.message(.store(Self.object(8, stamp: ObjectVersion.maxStamp - 1)), from: Self.p(9)), now: Self.t0)
        #expect(Self.acknowledged(m.on(.put(requestID: 2, key: 8, value: ObjectValue(bytes: 1, content: 2)), now: Self.t0)))
        #expect(m.held(8)?.value.content == 2 && m.held(8)?.version.stamp == ObjectVersion.maxStamp)
        // Any key and request id is one: answered, or ignored as a late answer.
        #expect(Self.sends(m.on(.message(.fetch(requestID: .max, key: .max), from: Self.p(9)), now: Self.t0))
            == [.fetched(requestID: .max, key: .max, object: nil)])
        #expect(m.on(.message(.fetched(requestID: .max, key: .max, object: nil), from: Self.p(9)), now: Self.t0).isEmpty)
        #expect(m.on(.message(.stored(key: .max, version: ObjectVersion(stamp: 0, writer: Self.reserved)), from: Self.p(9)), now: Self.t0).isEmpty)
        #expect(m.counters.messagesDropped == dropped.count)
        var total = PlacementCounters()
        total.add(m.counters)
        #expect(total == m.counters)
    }

    @Test func offersAndStoresOfNewKeysCannotGrowTheTablesWithoutBound() {
        var m = Self.placement(maxObjects: 100)
        _ = m.on(.message(.store(Self.object(1, stamp: 5)), from: Self.p(9)), now: Self.t0)
        // Offers of keys not held leave nothing behind (before: one stamp per offered key, for ever).
        let seenBefore = m.seenCount
        for k in UInt64(1_000)..<11_000 {
            let out = m.on(.message(.offer(key: k, version: ObjectVersion(stamp: 1 << 40, writer: Self.p(9))), from: Self.p(9)), now: Self.t0)
            #expect(Self.sends(out) == [.want(key: k, version: ObjectVersion(stamp: 1 << 40, writer: Self.p(9)))])
        }
        #expect(m.seenCount == seenBefore)
        // An offer of a key held still raises the next put's stamp.
        _ = m.on(.message(.offer(key: 1, version: ObjectVersion(stamp: 1 << 40, writer: Self.p(9))), from: Self.p(9)), now: Self.t0)
        let raised = m.on(.put(requestID: 1, key: 1, value: ObjectValue(bytes: 1, content: 3)), now: Self.t0)
        #expect(raised.contains { if case .putAcknowledged(1, 1, let v) = $0 { v.stamp == (1 << 40) + 1 } else { false } })
        // Stores of new keys stop at `maxObjects`: the rest are refused and not acknowledged.
        var acked = 0
        for k in UInt64(100_000)..<100_200 {
            let out = m.on(.message(.store(Self.object(k, stamp: 1)), from: Self.p(9)), now: Self.t0)
            acked += Self.sends(out).count
        }
        #expect(m.heldCount == 100 && acked == 99)
        #expect(m.counters.objectsRefused == 101)
        #expect(m.on(.message(.offer(key: 5, version: ObjectVersion(stamp: 1, writer: Self.p(9))), from: Self.p(9)), now: Self.t0).isEmpty)
        #expect(m.counters.objectsRefused == 102)
        // A local put of a new key is not stored here either, so it is not acknowledged.
        #expect(!Self.acknowledged(m.on(.put(requestID: 2, key: 6, value: ObjectValue(bytes: 1, content: 3)), now: Self.t0)))
        #expect(m.counters.objectsRefused == 103 && m.held(6) == nil)
        // And it still works: a held key takes a newer version, from a store or a put.
        let newer = Self.object(100_000, stamp: 2, content: 7)
        #expect(Self.sends(m.on(.message(.store(newer), from: Self.p(9)), now: Self.t0)) == [.stored(key: newer.key, version: newer.version)])
        #expect(m.held(100_000)?.value.content == 7)
        #expect(Self.acknowledged(m.on(.put(requestID: 3, key: 100_001, value: ObjectValue(bytes: 1, content: 4)), now: Self.t0)))
        #expect(m.counters.messagesDropped == 0)
    }
}
