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
}
