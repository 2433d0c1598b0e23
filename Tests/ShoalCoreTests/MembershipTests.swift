import Testing

@testable import ShoalCore

/// A tiny deterministic driver: `send` directives are delivered at once (FIFO), timers fire in
/// time order (ties FIFO). Peers in `down` neither receive nor act; `dropTo` loses messages.
private struct Cluster {
    var machines: [PeerID: Membership] = [:]
    var now = Instant.zero
    var down: Set<PeerID> = []
    var log: [(PeerID, MembershipDirective)] = []
    var changes: [(observer: PeerID, peer: PeerID, status: MemberStatus)] = []
    private var timers: [(at: Instant, order: Int, peer: PeerID, timer: MembershipTimer)] = []
    private var inbox: [(to: PeerID, from: PeerID, message: MembershipMessage)] = []
    private var order = 0
    var settings = MembershipSettings()
    let seed: UInt64
    /// Probability that a message is lost, and that a delivered one is delivered twice.
    var dropRate = 0.0
    var duplicateRate = 0.0
    private var net = SeededGenerator(seed: 0)

    init(seed: UInt64, settings: MembershipSettings = MembershipSettings()) {
        self.seed = seed
        self.settings = settings
        self.net = SeededGenerator(seed: seed &+ 1)
    }

    static func p(_ n: UInt64) -> PeerID { PeerID(raw: n) }

    mutating func add(_ n: UInt64, seeds: [UInt64]) {
        let id = Self.p(n)
        machines[id] = Membership(id: id, settings: settings, seed: seed)
        deliver(id, .start(seeds: seeds.map(Self.p)))
    }

    mutating func deliver(_ peer: PeerID, _ event: MembershipEvent) {
        guard !down.contains(peer), var m = machines[peer] else { return }
        var out: [MembershipDirective] = []
        m.on(event, now: now, into: &out)
        machines[peer] = m
        for d in out {
            log.append((peer, d))
            switch d {
            case .send(let msg, let to):
                if dropRate > 0, net.nextUnitDouble() < dropRate { continue }
                inbox.append((to, peer, msg))
                if duplicateRate > 0, net.nextUnitDouble() < duplicateRate { inbox.append((to, peer, msg)) }
            case .schedule(let t, let after):
                order += 1
                timers.append((now + after, order, peer, t))
            case .statusChanged(let who, let status): changes.append((peer, who, status))
            }
        }
        while !inbox.isEmpty {
            let (to, from, msg) = inbox.removeFirst()
            deliver(to, .message(msg, from: from))
        }
    }

    mutating func run(for d: Interval) {
        let end = now + d
        while let i = timers.indices.min(by: { (timers[$0].at, timers[$0].order) < (timers[$1].at, timers[$1].order) }),
            timers[i].at <= end
        {
            let t = timers.remove(at: i)
            now = t.at
            deliver(t.peer, .timer(t.timer))
        }
        now = end
    }

    func view(_ observer: UInt64, _ peer: UInt64) -> MemberInfo? { machines[Self.p(observer)]?.member(Self.p(peer)) }

    /// A cluster of `n` peers joined through peer 1, started 50ms apart.
    static func formed(_ n: UInt64, seed: UInt64, settings: MembershipSettings = MembershipSettings()) -> Cluster {
        var c = Cluster(seed: seed, settings: settings)
        c.add(1, seeds: [])
        for i in 2...n {
            c.run(for: .milliseconds(50))
            c.add(i, seeds: [1])
        }
        c.run(for: .seconds(5))
        return c
    }
}

private func upd(_ n: UInt64, _ s: MemberStatus, _ inc: UInt64, load: PeerLoad = PeerLoad()) -> MemberUpdate {
    MemberUpdate(peer: PeerID(raw: n), status: s, incarnation: inc, load: load)
}

private func sends(_ out: [MembershipDirective]) -> [(MembershipMessage, PeerID)] {
    out.compactMap { if case .send(let m, let to) = $0 { return (m, to) } else { return nil } }
}

@Suite struct MembershipTests {
    @Test func startWithoutSeedsFormsOneMemberCluster() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        let out = m.on(.start(seeds: []), now: .zero)
        #expect(out.contains(.statusChanged(PeerID(raw: 1), .alive)))
        #expect(out.contains(.schedule(.protocolPeriod, after: .milliseconds(200))))
        #expect(sends(out).isEmpty)
        #expect(m.aliveCount == 1)
        #expect(m.isJoined)
        // A period with nobody to probe sends nothing but reschedules.
        let next = m.on(.timer(.protocolPeriod), now: Instant.zero + .milliseconds(200))
        #expect(next == [.schedule(.protocolPeriod, after: .milliseconds(200))])
    }

    @Test func joinThroughSeedHandshake() {
        var seed = Membership(id: PeerID(raw: 1), seed: 1)
        var joiner = Membership(id: PeerID(raw: 2), seed: 1)
        _ = seed.on(.start(seeds: []), now: .zero)
        let j = joiner.on(.start(seeds: [PeerID(raw: 1)]), now: .zero)
        #expect(j.contains(.schedule(.joinRetry, after: joiner.settings.joinRetryInterval)))
        let joinMsgs = sends(j)
        #expect(joinMsgs.count == 1)
        #expect(joinMsgs[0].0 == .join(updates: [upd(2, .alive, 0)]))
        let reply = seed.on(.message(joinMsgs[0].0, from: PeerID(raw: 2)), now: .zero)
        #expect(reply.contains(.statusChanged(PeerID(raw: 2), .alive)))
        #expect(sends(reply).map(\.0) == [.joinReply(members: [upd(1, .alive, 0), upd(2, .alive, 0)])])
        let got = joiner.on(.message(sends(reply)[0].0, from: PeerID(raw: 1)), now: .zero)
        #expect(got == [.statusChanged(PeerID(raw: 1), .alive)])
        #expect(joiner.isJoined)
        // A retry after the reply does nothing.
        #expect(joiner.on(.timer(.joinRetry), now: .zero).isEmpty)
        // The seed gossips the joiner on its next message.
        let ping = seed.on(.timer(.protocolPeriod), now: .zero)
        #expect(sends(ping).first.map { $0.0.updates } == [upd(2, .alive, 0)])
    }

    @Test func joinRetriesAreBounded() {
        var s = MembershipSettings()
        s.maxJoinAttempts = 3
        var m = Membership(id: PeerID(raw: 9), settings: s, seed: 3)
        var out = m.on(.start(seeds: [PeerID(raw: 1), PeerID(raw: 2)]), now: .zero)
        var joins = sends(out).count
        for _ in 0..<10 {
            out = m.on(.timer(.joinRetry), now: .zero)
            joins += sends(out).count
        }
        #expect(joins == 3 * 2)
    }

    @Test func twentyPeersConvergeToAllAlive() {
        let c = Cluster.formed(20, seed: 42)
        for o in UInt64(1)...20 {
            let m = c.machines[PeerID(raw: o)]!
            #expect(m.members.count == 20, "seed 42, observer p\(o)")
            #expect(m.members.allSatisfy { $0.status == .alive }, "seed 42, observer p\(o)")
            #expect(m.aliveCount == 20)
            var each: [MemberInfo] = []
            m.forEachMember { each.append($0) }
            #expect(each.first?.peer == PeerID(raw: o))
            #expect(each.sorted { $0.peer < $1.peer } == m.members)
        }
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func lossyDuplicatingNetworkStillConverges(seed: UInt64) {
        var c = Cluster(seed: seed)
        c.dropRate = 0.05
        c.duplicateRate = 0.05
        c.add(1, seeds: [])
        for i in UInt64(2)...20 {
            c.run(for: .milliseconds(50))
            c.add(i, seeds: [1])
        }
        c.run(for: .seconds(20))
        // A live peer may be declared dead when its probes, the indirect ones and its refutation are
        // all lost: at 5% loss and duplication this happens in about 2% of 20-second runs (9 or 10
        // seeds of 500, measured), so it must stay rare here; it is undone once loss stops.
        let dead = c.changes.filter { $0.status == .dead }
        #expect(dead.count <= 1, "seed \(seed): \(dead)")
        // Loss stops; any standing suspicion is refuted and the views agree.
        c.dropRate = 0
        c.duplicateRate = 0
        c.run(for: .seconds(3))
        for o in UInt64(1)...20 {
            let m = c.machines[PeerID(raw: o)]!
            #expect(m.members.count == 20, "seed \(seed), observer p\(o)")
            #expect(m.members.allSatisfy { $0.status == .alive }, "seed \(seed), observer p\(o)")
        }
    }

    @Test func hundredPeerJoinBurstConvergesAndAgreesOnACrash() {
        var c = Cluster(seed: 21)
        c.add(1, seeds: [])
        for i in UInt64(2)...100 {
            c.run(for: .milliseconds(10))
            c.add(i, seeds: [1, 2, 3].filter { $0 < i })
        }
        // A burst of 99 joins in one second: every update competes for 8 piggyback slots, so full
        // views take about 8 s by gossip alone, about 2 s with the default anti-entropy pulls
        // (measured on this seed).
        c.run(for: .seconds(20))
        for o in UInt64(1)...100 {
            #expect(c.machines[PeerID(raw: o)]!.aliveCount == 100, "seed 21, observer p\(o)")
        }
        c.down.insert(PeerID(raw: 50))
        c.run(for: .seconds(10))
        for o in UInt64(1)...100 where o != 50 {
            #expect(c.view(o, 50)?.status == .dead, "seed 21, observer p\(o)")
            #expect(c.machines[PeerID(raw: o)]!.aliveCount == 99, "seed 21, observer p\(o)")
        }
    }

    @Test func antiEntropySyncSpeedsUpAJoinBurst() {
        func secondsToConverge(syncEveryPeriods: Int) -> Int {
            var s = MembershipSettings()
            s.syncEveryPeriods = syncEveryPeriods
            var c = Cluster(seed: 21, settings: s)
            c.add(1, seeds: [])
            for i in UInt64(2)...100 {
                c.run(for: .milliseconds(10))
                c.add(i, seeds: [1, 2, 3].filter { $0 < i })
            }
            for t in 1...30 {
                c.run(for: .seconds(1))
                if (UInt64(1)...100).allSatisfy({ c.machines[PeerID(raw: $0)]!.aliveCount == 100 }) { return t }
            }
            return 1000
        }
        let without = secondsToConverge(syncEveryPeriods: 0)
        let with = secondsToConverge(syncEveryPeriods: 10)
        #expect(with < without, "seed 21: \(with)s with sync, \(without)s without")
        #expect(with <= 8, "seed 21")
    }

    /// Anti-entropy sends a digest, not a view: a partner whose view agrees sends nothing back; one
    /// that differs sends only the members of the differing buckets, which include the difference.
    @Test func antiEntropyExchangesOnlyDifferingDigestBuckets() {
        var s = MembershipSettings()
        s.syncEveryPeriods = 1
        var a = Membership(id: PeerID(raw: 1), settings: s, seed: 1)
        var b = Membership(id: PeerID(raw: 2), settings: s, seed: 2)
        _ = a.on(.start(seeds: []), now: .zero)
        _ = b.on(.start(seeds: []), now: .zero)
        let view = [upd(1, .alive, 0), upd(2, .alive, 0)] + (UInt64(3)...200).map { upd($0, .alive, 0) }
        _ = a.on(.message(.joinReply(members: view), from: PeerID(raw: 2)), now: .zero)
        _ = b.on(.message(.joinReply(members: view), from: PeerID(raw: 1)), now: .zero)
        func syncRequest(_ m: inout Membership) -> MembershipMessage? {
            sends(m.on(.timer(.protocolPeriod), now: .zero)).first {
                if case .sync = $0.0 { true } else { false }
            }?.0
        }
        guard let request = syncRequest(&a), case .sync(let digest, let updates) = request else {
            Issue.record("expected a sync request")
            return
        }
        #expect(digest.count == 32)  // 200 members, about 8 a bucket
        #expect(updates == [upd(1, .alive, 0)])
        #expect(request.byteSize < 400)
        // Same views: no reply at all.
        #expect(sends(b.on(.message(request, from: PeerID(raw: 1)), now: .zero)).isEmpty)
        // b learns that p77 is dead at incarnation 0 and of a new member p500: a pulls just those buckets.
        let news = MembershipMessage.ack(sequence: 1, updates: [upd(77, .dead, 0), upd(500, .alive, 0)])
        _ = b.on(.message(news, from: PeerID(raw: 3)), now: .zero)
        let replies = sends(b.on(.message(request, from: PeerID(raw: 1)), now: .zero))
        guard replies.count == 1, case .syncReply(let members) = replies[0].0 else {
            Issue.record("expected one sync reply, got \(replies)")
            return
        }
        #expect(members.contains(upd(77, .dead, 0)))
        #expect(members.contains(upd(500, .alive, 0)))
        #expect(members.count < 40, "\(members.count) members for two differing buckets of about 8")
        _ = a.on(.message(replies[0].0, from: PeerID(raw: 2)), now: .zero)
        #expect(a.member(PeerID(raw: 77))?.status == .dead)
        #expect(a.member(PeerID(raw: 500))?.status == .alive)
        // Views agree again: the next sync from a gets no reply.
        guard let again = syncRequest(&a) else {
            Issue.record("expected a sync request")
            return
        }
        #expect(sends(b.on(.message(again, from: PeerID(raw: 1)), now: .zero)).isEmpty)
        // A malformed digest (not a power of two up to 64 buckets) is ignored.
        let bad = MembershipMessage.sync(digest: [1, 2, 3], updates: [])
        #expect(sends(b.on(.message(bad, from: PeerID(raw: 1)), now: .zero)).isEmpty)
    }

    @Test func silentPeerIsSuspectedThenDeclaredDeadByEveryone() {
        var c = Cluster.formed(10, seed: 7)
        c.down.insert(PeerID(raw: 4))
        c.run(for: .seconds(8))
        for o in UInt64(1)...10 where o != 4 {
            #expect(c.view(o, 4)?.status == .dead, "seed 7, observer p\(o)")
            #expect(c.machines[PeerID(raw: o)]!.aliveCount == 9)
        }
        #expect(c.changes.contains { $0.peer == PeerID(raw: 4) && $0.status == .suspect })
        // Everyone else still sees everyone else alive.
        for o in UInt64(1)...10 where o != 4 {
            for q in UInt64(1)...10 where q != 4 { #expect(c.view(o, q)?.status == .alive) }
        }
    }

    @Test func suspectedLivePeerRefutesWithHigherIncarnation() {
        // By hand: p3 hears it is suspect at incarnation 0 and answers with alive(1).
        var p3 = Membership(id: PeerID(raw: 3), seed: 1)
        _ = p3.on(.start(seeds: []), now: .zero)
        let out = p3.on(.message(.ping(sequence: 5, updates: [upd(3, .suspect, 0)]), from: PeerID(raw: 1)), now: .zero)
        #expect(p3.incarnation == 1)
        let ack = sends(out).first { if case .ack = $0.0 { true } else { false } }
        #expect(ack?.0.updates.contains(upd(3, .alive, 1)) == true)
        // An older suspicion does not bump it again.
        _ = p3.on(.message(.ping(sequence: 6, updates: [upd(3, .suspect, 0)]), from: PeerID(raw: 1)), now: .zero)
        #expect(p3.incarnation == 1)

        // In a cluster: p3 goes silent briefly, gets suspected, comes back and refutes.
        var c = Cluster.formed(8, seed: 11)
        c.down.insert(PeerID(raw: 3))
        let before = c.changes.count
        var suspected = false
        for _ in 0..<20 where !suspected {
            c.run(for: .milliseconds(100))
            suspected = c.changes[before...].contains { $0.peer == PeerID(raw: 3) && $0.status == .suspect }
        }
        #expect(suspected, "seed 11")
        c.down.remove(PeerID(raw: 3))
        c.run(for: .seconds(5))
        for o in UInt64(1)...8 {
            #expect(c.view(o, 3)?.status == .alive, "seed 11, observer p\(o)")
            #expect((c.view(o, 3)?.incarnation ?? 0) >= 1)
        }
    }

    @Test func precedenceTable() {
        func info(_ s: MemberStatus, _ i: UInt64) -> MemberInfo {
            MemberInfo(peer: PeerID(raw: 2), status: s, incarnation: i)
        }
        typealias Row = (old: MemberInfo, new: MemberUpdate, wins: Bool)
        let rows: [Row] = [
            (info(.alive, 1), upd(2, .alive, 2), true),
            (info(.alive, 1), upd(2, .alive, 1), false),
            (info(.alive, 1), upd(2, .alive, 0), false),
            (info(.alive, 1), upd(2, .alive, 1, load: PeerLoad(freeSlots: 3)), false),  // load is not status
            (info(.suspect, 1), upd(2, .alive, 1), false),
            (info(.suspect, 1), upd(2, .alive, 2), true),
            (info(.alive, 1), upd(2, .suspect, 1), true),
            (info(.alive, 1), upd(2, .suspect, 0), false),
            (info(.alive, 1), upd(2, .suspect, 2), true),
            (info(.suspect, 1), upd(2, .suspect, 1), false),
            (info(.suspect, 1), upd(2, .suspect, 2), true),
            // A death or leave is about one incarnation: a stale one does not bury a newer life.
            (info(.alive, 5), upd(2, .dead, 0), false),
            (info(.alive, 5), upd(2, .dead, 5), true),
            (info(.suspect, 5), upd(2, .dead, 0), false),
            (info(.suspect, 5), upd(2, .dead, 6), true),
            // Only a higher incarnation brings a dead or departed peer back (its refutation).
            (info(.dead, 0), upd(2, .alive, 9), true),
            (info(.dead, 9), upd(2, .alive, 9), false),
            (info(.dead, 0), upd(2, .suspect, 9), true),
            (info(.dead, 9), upd(2, .suspect, 9), false),
            (info(.dead, 0), upd(2, .dead, 9), false),
            (info(.alive, 3), upd(2, .left, 0), false),
            (info(.alive, 3), upd(2, .left, 3), true),
            (info(.dead, 3), upd(2, .left, 3), true),
            (info(.dead, 3), upd(2, .left, 0), false),
            (info(.left, 0), upd(2, .alive, 9), true),
            (info(.left, 9), upd(2, .alive, 9), false),
            (info(.left, 0), upd(2, .dead, 9), false),
        ]
        for (n, r) in rows.enumerated() {
            #expect(Membership.overrides(r.new, r.old) == r.wins, "row \(n): \(r.old) <- \(r.new)")
        }
    }

    @Test func loadTakesTheHigherVersionWhateverTheOrder() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        func load(_ n: UInt32) -> PeerLoad { PeerLoad(freeSlots: n) }
        let v2 = MemberUpdate(peer: PeerID(raw: 2), status: .alive, incarnation: 0, load: load(2), loadVersion: 2)
        let v1 = MemberUpdate(peer: PeerID(raw: 2), status: .alive, incarnation: 0, load: load(1), loadVersion: 1)
        let suspectV1 = MemberUpdate(
            peer: PeerID(raw: 2), status: .suspect, incarnation: 0, load: load(1), loadVersion: 1)
        for u in [v2, v1, v2, suspectV1, v1] {
            _ = m.on(.message(.ack(sequence: 1, updates: [u]), from: PeerID(raw: 3)), now: .zero)
        }
        // Suspicion applied (status precedence), load kept from the newer version.
        #expect(
            m.member(PeerID(raw: 2))
                == MemberInfo(peer: PeerID(raw: 2), status: .suspect, incarnation: 0, load: load(2), loadVersion: 2))

        // Our own load: setLoad bumps the version; a stale report of ours is overtaken.
        _ = m.on(.setLoad(load(9)), now: .zero)
        #expect(m.member(PeerID(raw: 1))?.loadVersion == 1)
        let stale = MemberUpdate(peer: PeerID(raw: 1), status: .alive, incarnation: 0, load: load(4), loadVersion: 3)
        _ = m.on(.message(.ack(sequence: 1, updates: [stale]), from: PeerID(raw: 3)), now: .zero)
        #expect(m.member(PeerID(raw: 1))?.load == load(9))
        #expect(m.member(PeerID(raw: 1))?.loadVersion == 4)
    }

    @Test func suspectRecipientHearsOfItsSuspicion() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        _ = m.on(.message(.ack(sequence: 1, updates: [upd(2, .suspect, 0)]), from: PeerID(raw: 3)), now: .zero)
        // Drain the gossip buffer through p3.
        for s in UInt64(0)..<50 {
            _ = m.on(.message(.ping(sequence: s, updates: []), from: PeerID(raw: 3)), now: .zero)
        }
        #expect(m.pendingGossipCount == 0)
        let out = m.on(.message(.ping(sequence: 99, updates: []), from: PeerID(raw: 2)), now: .zero)
        // p2 is known (as suspect), so the ack carries its suspicion, once.
        #expect(sends(out).map(\.0) == [.ack(sequence: 99, updates: [upd(2, .suspect, 0)])])
    }

    @Test func deadHoldsUntilARefutationAtAHigherIncarnation() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        var out = m.on(.message(.ping(sequence: 1, updates: [upd(2, .alive, 7)]), from: PeerID(raw: 3)), now: .zero)
        #expect(out.contains(.statusChanged(PeerID(raw: 2), .alive)))
        // A stale death (an older incarnation) changes nothing.
        out = m.on(.message(.ack(sequence: 99, updates: [upd(2, .dead, 6)]), from: PeerID(raw: 3)), now: .zero)
        #expect(m.member(PeerID(raw: 2))?.status == .alive)
        out = m.on(.message(.ack(sequence: 99, updates: [upd(2, .dead, 7)]), from: PeerID(raw: 3)), now: .zero)
        #expect(out.contains(.statusChanged(PeerID(raw: 2), .dead)))
        // Alive at the same incarnation, or a bare message from the peer, does not revive it.
        out = m.on(.message(.ack(sequence: 99, updates: [upd(2, .alive, 7)]), from: PeerID(raw: 3)), now: .zero)
        #expect(m.member(PeerID(raw: 2))?.status == .dead)
        #expect(!out.contains { if case .statusChanged = $0 { true } else { false } })
        _ = m.on(.message(.ping(sequence: 2, updates: []), from: PeerID(raw: 2)), now: .zero)
        #expect(m.member(PeerID(raw: 2))?.status == .dead)
        #expect(m.aliveCount == 2)  // self and p3
        // Its refutation at a higher incarnation does.
        out = m.on(.message(.ack(sequence: 99, updates: [upd(2, .alive, 8)]), from: PeerID(raw: 2)), now: .zero)
        #expect(out.contains(.statusChanged(PeerID(raw: 2), .alive)))
        #expect(m.aliveCount == 3)
    }

    /// A member we believed dead that refutes it itself (first contact after a partition heals or
    /// a restart) is asked for its view at once, at most once a protocol period.
    @Test func aRevivedMemberIsPulledFromAtOnce() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        for p in UInt64(2)...4 {
            _ = m.on(.message(.ack(sequence: 1, updates: [upd(p, .dead, 0)]), from: PeerID(raw: 9)), now: .zero)
        }
        func pulls(_ out: [MembershipDirective]) -> [PeerID] {
            sends(out).compactMap { if case .sync = $0.0 { $0.1 } else { nil } }
        }
        // Someone else reporting p2 alive again: no pull from p2.
        var out = m.on(.message(.ack(sequence: 1, updates: [upd(2, .alive, 1)]), from: PeerID(raw: 9)), now: .zero)
        #expect(m.member(PeerID(raw: 2))?.status == .alive)
        #expect(pulls(out).isEmpty)
        // p3 refutes its death itself: pulled from at once.
        out = m.on(.message(.ack(sequence: 1, updates: [upd(3, .alive, 1)]), from: PeerID(raw: 3)), now: .zero)
        #expect(pulls(out) == [PeerID(raw: 3)])
        // p4 too, in the same period: not again until the next period.
        out = m.on(.message(.ack(sequence: 1, updates: [upd(4, .alive, 1)]), from: PeerID(raw: 4)), now: .zero)
        #expect(pulls(out).isEmpty)
        // A message from a member that stays dead (no refutation) pulls nothing.
        _ = m.on(.message(.ack(sequence: 1, updates: [upd(5, .dead, 0)]), from: PeerID(raw: 9)), now: .zero)
        _ = m.on(.timer(.protocolPeriod), now: .zero)
        out = m.on(.message(.ping(sequence: 3, updates: []), from: PeerID(raw: 5)), now: .zero)
        #expect(pulls(out).isEmpty)
        #expect(m.member(PeerID(raw: 5))?.status == .dead)
    }

    @Test func aPeerToldOfAnOldDeathAnnouncesItsNewerLife() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        // Refute a suspicion: incarnation 1.
        _ = m.on(.message(.ack(sequence: 1, updates: [upd(1, .suspect, 0)]), from: PeerID(raw: 2)), now: .zero)
        #expect(m.incarnation == 1)
        // Long after that gossip retired, a peer that declared us dead at incarnation 0 pings us:
        // our answer must carry our alive(1), or that peer would never hear of it.
        let out = m.on(.message(.ping(sequence: 7, updates: [upd(1, .dead, 0)]), from: PeerID(raw: 2)), now: .zero)
        #expect(m.incarnation == 1)
        let acks = out.compactMap { d -> [MemberUpdate]? in
            if case .send(.ack(7, let updates), _) = d { return updates } else { return nil }
        }
        #expect(acks.first?.contains { $0.peer == PeerID(raw: 1) && $0.status == .alive && $0.incarnation == 1 } == true)
    }

    @Test func suspicionTimerDeclaresDeadOnlyForSameIncarnation() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        var out = m.on(.message(.ack(sequence: 1, updates: [upd(2, .suspect, 0)]), from: PeerID(raw: 3)), now: .zero)
        #expect(out.contains(.schedule(.suspicion(PeerID(raw: 2), incarnation: 0), after: .seconds(1))))
        _ = m.on(.message(.ack(sequence: 1, updates: [upd(2, .alive, 1)]), from: PeerID(raw: 3)), now: .zero)
        out = m.on(.timer(.suspicion(PeerID(raw: 2), incarnation: 0)), now: .zero)
        #expect(out.isEmpty)
        #expect(m.member(PeerID(raw: 2))?.status == .alive)
        _ = m.on(.message(.ack(sequence: 1, updates: [upd(2, .suspect, 1)]), from: PeerID(raw: 3)), now: .zero)
        out = m.on(.timer(.suspicion(PeerID(raw: 2), incarnation: 1)), now: .zero)
        #expect(out.contains(.statusChanged(PeerID(raw: 2), .dead)))
    }

    @Test func leaveSpreadsLeft() {
        var c = Cluster.formed(12, seed: 5)
        c.deliver(PeerID(raw: 7), .leave)
        #expect(c.machines[PeerID(raw: 7)]!.member(PeerID(raw: 7))?.status == .left)
        c.run(for: .seconds(4))
        for o in UInt64(1)...12 where o != 7 {
            #expect(c.view(o, 7)?.status == .left, "seed 5, observer p\(o)")
            #expect(c.machines[PeerID(raw: o)]!.aliveCount == 11)
        }
        // A peer that left ignores its timers.
        var m = c.machines[PeerID(raw: 7)]!
        #expect(m.on(.timer(.protocolPeriod), now: c.now).isEmpty)
    }

    @Test func piggybackBoundAndRetransmitLimit() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        for i in UInt64(2)...31 {
            _ = m.on(.message(.join(updates: [upd(i, .alive, 0)]), from: PeerID(raw: i)), now: .zero)
        }
        #expect(m.pendingGossipCount == 30)
        let limit = m.retransmitLimit
        #expect(limit == 3 * 5)  // n = 31: ceil(log2(32)) = 5
        var sentCount: [PeerID: Int] = [:]
        var rounds = 0
        while true {
            let out = m.on(.message(.ping(sequence: UInt64(rounds), updates: []), from: PeerID(raw: 2)), now: .zero)
            let ack = sends(out)[0].0
            #expect(ack.updates.count <= 8)
            if ack.updates.isEmpty { break }
            for u in ack.updates { sentCount[u.peer, default: 0] += 1 }
            rounds += 1
            #expect(rounds < 1000)
            if rounds >= 1000 { break }
        }
        #expect(sentCount.count == 30)
        #expect(sentCount.values.allSatisfy { $0 == limit })
        #expect(m.pendingGossipCount == 0)
    }

    /// A member whose state changes again is re-queued with its count reset: it is sent `limit`
    /// more times, never twice in one message, and the newest state is what is sent.
    @Test func requeuedUpdateIsSentAgainFromZero() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        for i in UInt64(2)...20 {
            _ = m.on(.message(.join(updates: [upd(i, .alive, 0)]), from: PeerID(raw: i)), now: .zero)
        }
        let limit = m.retransmitLimit
        var sent: [PeerID: Int] = [:]
        var rounds = 0
        func drain(_ m: inout Membership, rounds r: Int) {
            for _ in 0..<r {
                let out = m.on(.message(.ping(sequence: UInt64(rounds), updates: []), from: PeerID(raw: 2)), now: .zero)
                rounds += 1
                let updates = sends(out)[0].0.updates
                #expect(Set(updates.map(\.peer)).count == updates.count, "a member twice in one message")
                for u in updates {
                    sent[u.peer, default: 0] += 1
                    if u.peer == PeerID(raw: 7) { #expect(u.incarnation == (sent[u.peer]! > 3 ? 1 : 0)) }
                }
            }
        }
        // p7 goes out three times, then its state changes (incarnation 1) and it is re-queued.
        while sent[PeerID(raw: 7), default: 0] < 3 { drain(&m, rounds: 1) }
        _ = m.on(.message(.ack(sequence: 0, updates: [upd(7, .alive, 1)]), from: PeerID(raw: 3)), now: .zero)
        drain(&m, rounds: 1000)
        #expect(m.pendingGossipCount == 0)
        #expect(sent[PeerID(raw: 7)] == 3 + limit)
        #expect(sent.filter { $0.key != PeerID(raw: 7) }.values.allSatisfy { $0 == limit })
    }

    @Test func gossipBufferIsBounded() {
        var s = MembershipSettings()
        s.maxGossipUpdates = 10
        var m = Membership(id: PeerID(raw: 1), settings: s, seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        for i in UInt64(2)...50 {
            _ = m.on(.message(.join(updates: [upd(i, .alive, 0)]), from: PeerID(raw: i)), now: .zero)
        }
        #expect(m.pendingGossipCount == 10)
    }

    @Test func joinReplyIsBounded() {
        var s = MembershipSettings()
        s.maxSyncMembers = 5
        var m = Membership(id: PeerID(raw: 50), settings: s, seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        for i in UInt64(1)...20 {
            _ = m.on(.message(.join(updates: [upd(i, .alive, 0)]), from: PeerID(raw: i)), now: .zero)
        }
        // The seed first, then 4 others; the others start at a random slot, so replies cut by the
        // bound do not always name the same members.
        var named: Set<UInt64> = []
        for j in UInt64(21)...40 {
            let out = m.on(.message(.join(updates: [upd(j, .alive, 0)]), from: PeerID(raw: j)), now: .zero)
            guard case .joinReply(let members) = sends(out)[0].0 else {
                Issue.record("expected a join reply")
                return
            }
            #expect(members.count == 5)
            #expect(members.first?.peer.raw == 50)
            #expect(Set(members.map(\.peer)).count == 5)
            named.formUnion(members.dropFirst().map(\.peer.raw))
        }
        #expect(named.count > 20, "replies named only \(named.sorted())")
    }

    /// A sync reply cut by the bound also starts at a random slot: repeated pulls cover the view.
    @Test func boundedSyncRepliesCoverTheView() {
        var s = MembershipSettings()
        s.maxSyncMembers = 10
        var m = Membership(id: PeerID(raw: 1), settings: s, seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        let view = (UInt64(2)...100).map { upd($0, .alive, 0) }
        _ = m.on(.message(.joinReply(members: view), from: PeerID(raw: 2)), now: .zero)
        var learned: Set<PeerID> = []
        for _ in 0..<60 {
            let request = MembershipMessage.sync(digest: [0], updates: [])
            for (reply, _) in sends(m.on(.message(request, from: PeerID(raw: 2)), now: .zero)) {
                #expect(reply.updates.count == 10)
                learned.formUnion(reply.updates.map(\.peer))
            }
        }
        #expect(learned.count > 90, "60 pulls of 10 named only \(learned.count) of 100 members")
    }

    @Test func duplicateAndReorderedMessagesAreHarmless() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        let msgs: [MembershipMessage] = [
            .ack(sequence: 1, updates: [upd(2, .alive, 2)]),
            .ack(sequence: 1, updates: [upd(2, .suspect, 1)]),
            .ack(sequence: 1, updates: [upd(2, .alive, 2)]),
            .ack(sequence: 1, updates: [upd(2, .alive, 1)]),
        ]
        for msg in msgs { _ = m.on(.message(msg, from: PeerID(raw: 3)), now: .zero) }
        #expect(m.member(PeerID(raw: 2)) == MemberInfo(peer: PeerID(raw: 2), status: .alive, incarnation: 2))
        // Stale timers are ignored.
        #expect(m.on(.timer(.pingTimeout(sequence: 77)), now: .zero).isEmpty)
        #expect(m.on(.timer(.indirectTimeout(sequence: 77)), now: .zero).isEmpty)
    }

    @Test func indirectProbeThroughHelper() {
        // p1 pings p2 directly; no ack; p1 asks p3, p3 pings p2, p2 acks p3, p3 relays to p1.
        var p1 = Membership(id: PeerID(raw: 1), seed: 1)
        var p3 = Membership(id: PeerID(raw: 3), seed: 1)
        var p2 = Membership(id: PeerID(raw: 2), seed: 1)
        _ = p1.on(.start(seeds: []), now: .zero)
        _ = p2.on(.start(seeds: []), now: .zero)
        _ = p3.on(.start(seeds: []), now: .zero)
        for (from, to) in [(2, 1), (3, 1), (1, 3), (2, 3), (1, 2), (3, 2)] as [(UInt64, UInt64)] {
            let msg = MembershipMessage.join(updates: [upd(from, .alive, 0)])
            switch to {
            case 1: _ = p1.on(.message(msg, from: PeerID(raw: from)), now: .zero)
            case 2: _ = p2.on(.message(msg, from: PeerID(raw: from)), now: .zero)
            default: _ = p3.on(.message(msg, from: PeerID(raw: from)), now: .zero)
            }
        }
        // Find the period where p1 pings p2.
        var seq: UInt64 = 0
        for _ in 0..<4 where seq == 0 {
            let out = p1.on(.timer(.protocolPeriod), now: .zero)
            for (m, to) in sends(out) where to == PeerID(raw: 2) {
                if case .ping(let s, _) = m { seq = s }
            }
            if seq == 0 {  // acknowledge the ping to p3 so it is not suspected
                for (m, to) in sends(out) {
                    if case .ping(let s, _) = m {
                        _ = p1.on(.message(.ack(sequence: s, updates: []), from: to), now: .zero)
                    }
                }
            }
        }
        #expect(seq != 0)
        let timeout = p1.on(.timer(.pingTimeout(sequence: seq)), now: .zero)
        let req = sends(timeout)
        #expect(req.map(\.1) == [PeerID(raw: 3)])
        #expect(timeout.contains(.schedule(.indirectTimeout(sequence: seq), after: .milliseconds(120))))
        let relay = sends(p3.on(.message(req[0].0, from: PeerID(raw: 1)), now: .zero))
        #expect(relay.count == 1 && relay[0].1 == PeerID(raw: 2))
        guard case .ping(let relaySeq, _) = relay[0].0 else { Issue.record("expected ping"); return }
        let ack = sends(p2.on(.message(relay[0].0, from: PeerID(raw: 3)), now: .zero))
        let forwarded = sends(p3.on(.message(ack[0].0, from: PeerID(raw: 2)), now: .zero))
        #expect(forwarded.count == 1 && forwarded[0].1 == PeerID(raw: 1))
        guard case .ack(let fwdSeq, _) = forwarded[0].0 else { Issue.record("expected ack"); return }
        #expect(fwdSeq == seq && relaySeq != 0)
        _ = p1.on(.message(forwarded[0].0, from: PeerID(raw: 3)), now: .zero)
        // The indirect deadline now finds the probe answered: no suspicion.
        #expect(p1.on(.timer(.indirectTimeout(sequence: seq)), now: .zero).isEmpty)
        #expect(p1.member(PeerID(raw: 2))?.status == .alive)
    }

    @Test func pendingRelaysAreBounded() {
        var s = MembershipSettings()
        s.maxPendingRelays = 4
        var m = Membership(id: PeerID(raw: 1), settings: s, seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        var pings = 0
        for i in UInt64(0)..<10 {
            let out = m.on(
                .message(.pingRequest(sequence: i, target: PeerID(raw: 2), updates: []), from: PeerID(raw: 3)),
                now: .zero)
            pings += sends(out).count
        }
        #expect(pings == 4)
    }

    @Test func sameSeedsGiveIdenticalDirectiveSequences() {
        func trace(_ seed: UInt64) -> [String] {
            var c = Cluster.formed(10, seed: seed)
            c.down.insert(PeerID(raw: 6))
            c.deliver(PeerID(raw: 3), .setLoad(PeerLoad(freeSlots: 4)))
            c.run(for: .seconds(3))
            return c.log.map { "\($0.0) \($0.1)" }
        }
        let a = trace(99), b = trace(99)
        #expect(a.count > 1000)
        #expect(a == b)
        #expect(trace(100) != a)
    }

    @Test func loadSpreadsToAll() {
        var c = Cluster.formed(15, seed: 3)
        let load = PeerLoad(freeSlots: 6, readyTasks: 2, storedBytes: 1 << 20, catalogue: 17)
        c.deliver(PeerID(raw: 9), .setLoad(load))
        c.run(for: .seconds(3))
        for o in UInt64(1)...15 {
            #expect(c.view(o, 9)?.load == load, "seed 3, observer p\(o)")
            #expect(c.view(o, 9)?.status == .alive)
        }
    }

    /// The member table keeps incarnations and load versions in 32 bits: an update whose counter
    /// is above 2^32 - 2 (no peer refutes or reports its load 4 billion times) is ignored as
    /// malformed.
    @Test func countersBeyond32BitsAreIgnored() {
        var m = Membership(id: PeerID(raw: 1), seed: 1)
        _ = m.on(.start(seeds: []), now: .zero)
        let huge = UInt64(UInt32.max)
        _ = m.on(.message(.ack(sequence: 1, updates: [upd(2, .alive, 3)]), from: PeerID(raw: 3)), now: .zero)
        for u in [
            upd(2, .alive, huge), upd(2, .dead, 1 << 40),
            MemberUpdate(
                peer: PeerID(raw: 2), status: .alive, incarnation: 3, load: PeerLoad(freeSlots: 1), loadVersion: huge),
            upd(1, .suspect, huge), upd(4, .alive, 1 << 40),
        ] {
            _ = m.on(.message(.ack(sequence: 1, updates: [u]), from: PeerID(raw: 3)), now: .zero)
        }
        #expect(m.member(PeerID(raw: 2)) == MemberInfo(peer: PeerID(raw: 2), status: .alive, incarnation: 3))
        #expect(m.incarnation == 0)
        #expect(m.member(PeerID(raw: 4)) == nil)
        // The largest counters that fit are kept exactly, and a refutation may take the last one.
        _ = m.on(.message(.ack(sequence: 1, updates: [upd(2, .alive, huge - 1)]), from: PeerID(raw: 3)), now: .zero)
        #expect(m.member(PeerID(raw: 2))?.incarnation == huge - 1)
        _ = m.on(.message(.ack(sequence: 1, updates: [upd(1, .suspect, huge - 2)]), from: PeerID(raw: 3)), now: .zero)
        #expect(m.incarnation == huge - 1)
    }

    @Test func byteSizeGrowsWithUpdates() {
        let a = MembershipMessage.ping(sequence: 1, updates: [])
        let b = MembershipMessage.ping(sequence: 1, updates: [upd(1, .alive, 0), upd(2, .alive, 0)])
        #expect(b.byteSize - a.byteSize == 2 * MemberUpdate.estimatedByteSize)
        #expect(MembershipMessage.pingRequest(sequence: 1, target: PeerID(raw: 2), updates: []).byteSize > a.byteSize)
    }
}
