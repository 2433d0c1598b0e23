import Testing

@testable import ShoalCore

private func p(_ n: UInt64) -> PeerID { PeerID(raw: n) }
private func peers(_ range: ClosedRange<UInt64>) -> [PeerID] { range.map(p) }
private let t0 = Instant.zero
private func at(ms: Int64) -> Instant { t0 + .milliseconds(ms) }
private func value(_ content: UInt64, bytes: UInt64 = 100) -> ObjectValue {
    ObjectValue(bytes: bytes, content: content)
}

/// The reference ranking: a full sort by (weight descending, peer ascending).
private func ranked(_ key: UInt64, _ list: [PeerID]) -> [PeerID] {
    list.sorted {
        let wa = Rendezvous.weight(of: key, at: $0)
        let wb = Rendezvous.weight(of: key, at: $1)
        return wa != wb ? wa > wb : $0 < $1
    }
}

private func sends(_ out: [PlacementDirective]) -> [(PlacementMessage, PeerID)] {
    out.compactMap { if case .send(let m, let to) = $0 { return (m, to) } else { return nil } }
}

private func stores(_ out: [PlacementDirective]) -> [(StoredObject, PeerID)] {
    sends(out).compactMap { if case .store(let o) = $0.0 { return (o, $0.1) } else { return nil } }
}

private func acked(_ out: [PlacementDirective]) -> [(UInt64, ObjectVersion)] {
    out.compactMap { if case .putAcknowledged(let rid, _, let v) = $0 { return (rid, v) } else { return nil } }
}

private func persisted(_ out: [PlacementDirective]) -> [StoredObject] {
    out.compactMap { if case .persist(let o) = $0 { return o } else { return nil } }
}

/// Machines with the same live view.
private func machines(_ ids: [PeerID], settings: PlacementSettings = PlacementSettings()) -> [PeerID: PlacementMachine]
{
    var all: [PeerID: PlacementMachine] = [:]
    for id in ids {
        var m = PlacementMachine(id: id, settings: settings)
        _ = m.on(.members(ids), now: t0)
        all[id] = m
    }
    return all
}

/// A key whose replicas (R of `ids`) do or do not include `peer`.
private func key(for peer: PeerID, among ids: [PeerID], replica: Bool, count: Int = 3) -> UInt64 {
    (UInt64(0)...).first { Rendezvous.replicas(of: $0, among: ids, count: count).contains(peer) == replica }!
}

extension PlacementTests {
    @Suite struct RendezvousTests {
        @Test func matchesAFullSortWhateverTheInputOrder() {
            var rng = SeededGenerator(seed: 11)
            let all = peers(1...20)
            for key in UInt64(0)..<300 {
                var shuffled = all
                shuffled.shuffle(using: &rng)
                let reference = ranked(key, all)
                for count in [1, 2, 3, 5, 20, 25] {
                    let r = Rendezvous.replicas(of: key, among: shuffled, count: count)
                    #expect(r == Array(reference.prefix(count)), "key \(key) count \(count)")
                    #expect(Set(r).count == r.count)
                }
                // Duplicates in the input are ignored.
                #expect(
                    Rendezvous.replicas(of: key, among: shuffled + shuffled, count: 3) == Array(reference.prefix(3)))
            }
            #expect(Rendezvous.replicas(of: 1, among: all, count: 0) == [])
            #expect(Rendezvous.replicas(of: 1, among: [], count: 3) == [])
        }

        @Test func isDeterministic() {
            // Pinned values: a change of the weight function moves every stored object.
            let r = Rendezvous.replicas(of: 42, among: peers(1...10), count: 3)
            #expect(r == Rendezvous.replicas(of: 42, among: peers(1...10).reversed(), count: 3))
            #expect(Rendezvous.weight(of: 42, at: p(7)) == Rendezvous.weight(of: 42, at: p(7)))
            #expect(Rendezvous.weight(of: 42, at: p(7)) != Rendezvous.weight(of: 43, at: p(7)))
            #expect(Rendezvous.weight(of: 42, at: p(7)) != Rendezvous.weight(of: 42, at: p(8)))
        }

        @Test func removingAPeerMovesOnlyItsObjects() {
            let before = peers(1...10)
            let after = before.filter { $0 != p(5) }
            var moved = 0
            for key in UInt64(0)..<1_000 {
                let old = Rendezvous.replicas(of: key, among: before, count: 3)
                let new = Rendezvous.replicas(of: key, among: after, count: 3)
                if old.contains(p(5)) {
                    moved += 1
                    // The survivors keep their order; one new peer joins at the end.
                    #expect(Array(new.prefix(2)) == old.filter { $0 != p(5) }, "key \(key)")
                    #expect(!old.contains(new[2]))
                } else {
                    #expect(new == old, "key \(key)")
                }
            }
            #expect(moved > 200 && moved < 400)  // about 3/10 of the keys had p5
        }

        @Test func addingAPeerMovesAboutOneNth() {
            let before = peers(1...10)
            let after = before + [p(11)]
            var primaryMoved = 0
            var setChanged = 0
            for key in UInt64(0)..<1_000 {
                let old = Rendezvous.replicas(of: key, among: before, count: 3)
                let new = Rendezvous.replicas(of: key, among: after, count: 3)
                if new[0] != old[0] {
                    primaryMoved += 1
                    #expect(new[0] == p(11))
                }
                if new != old {
                    setChanged += 1
                    // Only the newcomer came in, and only the last of the old set went out.
                    #expect(new.contains(p(11)) && new.filter { $0 != p(11) } == Array(old.prefix(2)), "key \(key)")
                }
            }
            #expect(primaryMoved > 50 && primaryMoved < 140)  // ~1/11
            #expect(setChanged > 200 && setChanged < 350)  // ~3/11
        }

        @Test func spreadsKeysEvenly() {
            let all = peers(1...10)
            var load: [PeerID: Int] = [:]
            for key in UInt64(0)..<1_000 {
                for r in Rendezvous.replicas(of: key, among: all, count: 3) { load[r, default: 0] += 1 }
            }
            // 300 expected per peer (binomial standard deviation ~14.5).
            for peer in all { #expect((240...360).contains(load[peer] ?? 0), "\(peer) holds \(load[peer] ?? 0)") }
            // Sequential, structured peer ids too.
            let spaced = (0..<10).map { PeerID(raw: UInt64($0) << 32) }
            load = [:]
            for key in UInt64(0)..<1_000 {
                load[Rendezvous.replicas(of: key, among: spaced, count: 1)[0], default: 0] += 1
            }
            for peer in spaced { #expect((50...150).contains(load[peer] ?? 0), "\(peer) holds \(load[peer] ?? 0)") }
        }
    }

}

/// Swift Testing suites of the placement machine (`swift test --filter PlacementTests`).
@Suite struct PlacementTests {
    @Test func settingsAreClamped() {
        var s = PlacementSettings()
        s.replicas = 99
        s.writeQuorum = 0
        s.maxGetPeers = 1
        s.maxStoreAttempts = 0
        s.storeTimeout = .zero
        let c = s.clamped
        #expect(c.replicas == 16 && c.writeQuorum == 1 && c.maxGetPeers == 16 && c.maxStoreAttempts == 1)
        #expect(c.storeTimeout == .microseconds(1))
        #expect(PlacementSettings().clamped == PlacementSettings())
    }

    @Test func checksumIsBlake2bOfContentAndSize() {
        let v = ObjectValue(bytes: 10, content: 7)
        #expect(v.isIntact)
        #expect(v.checksum == ObjectValue.checksum(of: 7, bytes: 10))
        #expect(ObjectValue.checksum(of: 7, bytes: 10) != ObjectValue.checksum(of: 7, bytes: 11))
        #expect(ObjectValue.checksum(of: 7, bytes: 10) != ObjectValue.checksum(of: 8, bytes: 10))
        // Little-endian content then size, BLAKE2b-256, first 8 bytes little-endian.
        var input = [UInt8](repeating: 0, count: 16)
        input[0] = 7
        input[8] = 10
        let digest = Checksum.blake2b(input)
        #expect(v.checksum == (0..<8).reduce(UInt64(0)) { $0 | UInt64(digest[$1]) << (8 * UInt64($1)) })
        #expect(!ObjectValue(bytes: 10, content: 8, checksum: v.checksum).isIntact)
    }

    @Test func versionStampsGrowPerKeyAndOrderByWriter() {
        var m = PlacementMachine(id: p(1))
        _ = m.on(.members([p(1)]), now: t0)
        let a = acked(m.on(.put(requestID: 1, key: 9, value: value(1)), now: at(ms: 5)))
        let b = acked(m.on(.put(requestID: 2, key: 9, value: value(2)), now: at(ms: 5)))
        let c = acked(m.on(.put(requestID: 3, key: 9, value: value(3)), now: at(ms: 1)))  // clock went back
        #expect(a.map(\.1) == [ObjectVersion(stamp: 5_000_000, writer: p(1))])
        #expect(b.map(\.1.stamp) == [5_000_001])
        #expect(c.map(\.1.stamp) == [5_000_002])
        #expect(m.held(9)?.value.content == 3)
        // A version seen from elsewhere raises the next stamp.
        _ = m.on(.message(.offer(key: 9, version: ObjectVersion(stamp: 9_000_000, writer: p(2))), from: p(2)), now: t0)
        #expect(acked(m.on(.put(requestID: 4, key: 9, value: value(4)), now: t0)).map(\.1.stamp) == [9_000_001])
        #expect(ObjectVersion(stamp: 5, writer: p(1)) < ObjectVersion(stamp: 5, writer: p(2)))
        #expect(ObjectVersion(stamp: 5, writer: p(9)) < ObjectVersion(stamp: 6, writer: p(1)))
    }

    @Test func putIsAcknowledgedOnlyAfterEveryReplicaPersisted() {
        let ids = peers(1...5)
        var all = machines(ids)
        let k = key(for: p(1), among: ids, replica: false)
        let replicas = Rendezvous.replicas(of: k, among: ids, count: 3)
        let out = all[p(1)]!.on(.put(requestID: 7, key: k, value: value(3)), now: at(ms: 1))
        #expect(persisted(out).isEmpty)  // not a replica: nothing local
        #expect(stores(out).map(\.1) == replicas)
        #expect(out.contains(.schedule(.put(serial: 1), after: .milliseconds(100))))
        let object = stores(out)[0].0
        for (i, r) in replicas.enumerated() {
            let reply = all[r]!.on(.message(.store(object), from: p(1)), now: at(ms: 2))
            // The persist comes first; the ack after it in the same batch.
            #expect(reply == [.persist(object), .send(.stored(key: k, version: object.version), to: p(1))])
            let done = all[p(1)]!.on(.message(.stored(key: k, version: object.version), from: r), now: at(ms: 3))
            if i < replicas.count - 1 {
                #expect(done.isEmpty)
            } else {
                #expect(done == [.putAcknowledged(requestID: 7, key: k, version: object.version)])
            }
        }
        #expect(all[p(1)]!.counters.putsAcknowledged == 1)
        #expect(all[p(1)]!.pendingRequests == 0)
        // The put's timer is now stale.
        #expect(all[p(1)]!.on(.timer(.put(serial: 1)), now: at(ms: 200)).isEmpty)
    }

    @Test func coordinatorThatIsAReplicaPersistsBeforeItAcknowledges() {
        let ids = peers(1...5)
        var all = machines(ids)
        let k = key(for: p(1), among: ids, replica: true)
        let out = all[p(1)]!.on(.put(requestID: 1, key: k, value: value(3)), now: at(ms: 1))
        #expect(persisted(out).count == 1)
        #expect(stores(out).count == 2)
        let version = persisted(out)[0].version
        var last: [PlacementDirective] = []
        for (_, r) in stores(out) {
            last = all[p(1)]!.on(.message(.stored(key: k, version: version), from: r), now: at(ms: 2))
        }
        #expect(last == [.putAcknowledged(requestID: 1, key: k, version: version)])
        // A single live peer acknowledges at once, after its persist.
        var solo = PlacementMachine(id: p(1))
        let one = solo.on(.put(requestID: 2, key: 5, value: value(1)), now: t0)
        #expect(one.count == 2)
        #expect(persisted([one[0]]).count == 1)
        #expect(acked([one[1]]).count == 1)
    }

    /// Found by a swarm seed: a peer cut off by a partition saw only itself alive, acknowledged a
    /// put with its own copy, then restarted without its store. Knowing the cluster is bigger, it
    /// now keeps the put pending and fails it.
    @Test func anIsolatedPeerCannotAcknowledgeAlone() {
        var isolated = PlacementMachine(id: p(1))
        _ = isolated.on(.clusterSize(12), now: t0)
        _ = isolated.on(.members([p(1)]), now: t0)
        let out = isolated.on(.put(requestID: 3, key: 5, value: value(1)), now: t0)
        #expect(persisted(out).count == 1)
        #expect(acked(out).isEmpty)
        // Fire the put's retry timer until it gives up.
        var timers = out.compactMap { if case .schedule(let t, _) = $0 { t } else { nil } }
        var failed = false
        var now = t0
        for _ in 0..<20 where !failed {
            now = now + .milliseconds(200)
            var next: [PlacementTimer] = []
            for timer in timers {
                for d in isolated.on(.timer(timer), now: now) {
                    if case .putFailed(3, 5, _) = d { failed = true }
                    if case .schedule(let t, _) = d { next.append(t) }
                }
            }
            timers = next
        }
        #expect(failed)
        // A cluster that really is that small still works.
        var small = PlacementMachine(id: p(1))
        _ = small.on(.clusterSize(1), now: t0)
        _ = small.on(.members([p(1)]), now: t0)
        #expect(acked(small.on(.put(requestID: 4, key: 5, value: value(1)), now: t0)).count == 1)
    }

    @Test func smallerWriteQuorumAcknowledgesSooner() {
        let ids = peers(1...5)
        var s = PlacementSettings()
        s.writeQuorum = 2
        var all = machines(ids, settings: s)
        let k = key(for: p(1), among: ids, replica: false)
        let out = all[p(1)]!.on(.put(requestID: 1, key: k, value: value(3)), now: t0)
        let (object, first) = stores(out)[0]
        #expect(all[p(1)]!.on(.message(.stored(key: k, version: object.version), from: first), now: t0).isEmpty)
        let second = stores(out)[1].1
        #expect(
            acked(all[p(1)]!.on(.message(.stored(key: k, version: object.version), from: second), now: t0)).count == 1)
    }

    @Test func storesAreIdempotentAndNeverGoBackInVersion() {
        var r = PlacementMachine(id: p(2))
        _ = r.on(.members(peers(1...3)), now: t0)
        let v1 = StoredObject(key: 4, version: ObjectVersion(stamp: 10, writer: p(1)), value: value(1))
        let v2 = StoredObject(key: 4, version: ObjectVersion(stamp: 20, writer: p(3)), value: value(2))
        // Newer first, then a duplicate, then the older one (reordered): every one acked, one stored.
        #expect(persisted(r.on(.message(.store(v2), from: p(3)), now: t0)) == [v2])
        let dup = r.on(.message(.store(v2), from: p(3)), now: t0)
        #expect(dup == [.send(.stored(key: 4, version: v2.version), to: p(3))])
        let old = r.on(.message(.store(v1), from: p(1)), now: t0)
        #expect(old == [.send(.stored(key: 4, version: v1.version), to: p(1))])
        #expect(r.held(4) == v2)
        #expect(r.counters.objectsStored == 1 && r.counters.duplicatesIgnored == 1 && r.counters.staleStores == 1)
        #expect(r.counters.storesReceived == 3)
        // A same-stamp tie goes to the higher writer.
        let tie = StoredObject(key: 4, version: ObjectVersion(stamp: 20, writer: p(9)), value: value(3))
        #expect(persisted(r.on(.message(.store(tie), from: p(1)), now: t0)) == [tie])
        #expect(r.heldObjects == [tie])

        // The coordinator counts a duplicated ack once.
        let ids = peers(1...5)
        var all = machines(ids)
        let k = key(for: p(1), among: ids, replica: false)
        let out = all[p(1)]!.on(.put(requestID: 1, key: k, value: value(3)), now: t0)
        let (object, first) = stores(out)[0]
        for _ in 0..<3 {
            #expect(all[p(1)]!.on(.message(.stored(key: k, version: object.version), from: first), now: t0).isEmpty)
        }
        #expect(all[p(1)]!.counters.duplicatesIgnored == 2)
        // An ack of another version (or from a stranger) confirms nothing.
        let other = ObjectVersion(stamp: object.version.stamp + 1, writer: p(1))
        for (_, r) in stores(out).dropFirst() {
            #expect(all[p(1)]!.on(.message(.stored(key: k, version: other), from: r), now: t0).isEmpty)
        }
        #expect(all[p(1)]!.pendingRequests == 1)
    }

    @Test func corruptTransferIsDroppedCountedAndRetried() {
        let ids = peers(1...5)
        var all = machines(ids)
        let k = key(for: p(1), among: ids, replica: false)
        let out = all[p(1)]!.on(.put(requestID: 1, key: k, value: value(3)), now: t0)
        let targets = stores(out).map(\.1)
        let object = stores(out)[0].0
        var damaged = object
        damaged.value.content ^= 0xFF
        // The first replica receives a damaged copy: dropped, counted, unanswered.
        #expect(all[targets[0]]!.on(.message(.store(damaged), from: p(1)), now: t0).isEmpty)
        #expect(all[targets[0]]!.counters.corruptTransfers == 1)
        #expect(all[targets[0]]!.held(k) == nil)
        for r in targets.dropFirst() {
            let reply = all[r]!.on(.message(.store(object), from: p(1)), now: t0)
            for (m, _) in sends(reply) { _ = all[p(1)]!.on(.message(m, from: r), now: t0) }
        }
        // The coordinator's timeout resends only to the silent replica; that copy arrives intact.
        let retry = all[p(1)]!.on(.timer(.put(serial: 1)), now: at(ms: 100))
        #expect(stores(retry).map(\.1) == [targets[0]])
        #expect(all[p(1)]!.counters.storeRetransmits == 1)
        let reply = all[targets[0]]!.on(.message(.store(stores(retry)[0].0), from: p(1)), now: at(ms: 101))
        #expect(all[targets[0]]!.held(k) == object)
        let done = all[p(1)]!.on(.message(sends(reply)[0].0, from: targets[0]), now: at(ms: 102))
        #expect(acked(done).count == 1)

        // A damaged get answer is counted and asked for again at once.
        var reader = all[p(1)]!
        let ask = reader.on(.get(requestID: 9, key: k), now: at(ms: 200))
        let fetches = sends(ask)
        #expect(fetches.map(\.1) == targets)
        guard case .fetch(let rid, _) = fetches[0].0 else { Issue.record("expected a fetch"); return }
        let again = reader.on(.message(.fetched(requestID: rid, key: k, object: damaged), from: targets[0]), now: t0)
        #expect(sends(again).map(\.1) == [targets[0]])
        #expect(reader.counters.corruptTransfers == 1)
        var result: [PlacementDirective] = []
        for r in targets {
            result += reader.on(.message(.fetched(requestID: rid, key: k, object: object), from: r), now: t0)
        }
        #expect(result == [.getResult(requestID: 9, object: object)])

        // A corrupt client value and a corrupt recovered object are refused.
        var m = PlacementMachine(id: p(1))
        let refused = m.on(.put(requestID: 3, key: 1, value: damaged.value), now: t0)
        #expect(refused.count == 1 && m.counters.putsFailed == 1)
        _ = m.on(.recovered([damaged, object]), now: t0)
        #expect(m.counters.corruptRecovered == 1 && m.heldObjects == [object])
    }

    @Test func putFailsAfterBoundedRetransmission() {
        let ids = peers(1...5)
        var all = machines(ids)
        let k = key(for: p(1), among: ids, replica: false)
        let out = all[p(1)]!.on(.put(requestID: 5, key: k, value: value(3)), now: t0)
        var resent = 0
        var failed: [PlacementDirective] = []
        for i in 1...10 {
            let next = all[p(1)]!.on(.timer(.put(serial: 1)), now: at(ms: Int64(100 * i)))
            resent += stores(next).count
            if next.contains(where: { if case .putFailed = $0 { return true } else { return false } }) {
                failed = next
                break
            }
        }
        #expect(stores(out).count + resent == 3 * 4)  // maxStoreAttempts sends to each replica
        guard case .putFailed(5, k, let reason) = failed.first else {
            Issue.record("no putFailed: \(failed)")
            return
        }
        #expect(reason.contains("0 of 3"))
        #expect(all[p(1)]!.pendingRequests == 0)
    }

    @Test func viewChangeRetargetsAPendingPut() {
        let ids = peers(1...6)
        var all = machines(ids)
        let k = key(for: p(1), among: ids, replica: false)
        let out = all[p(1)]!.on(.put(requestID: 1, key: k, value: value(3)), now: t0)
        let targets = stores(out).map(\.1)
        let object = stores(out)[0].0
        for r in targets.prefix(2) {
            _ = all[p(1)]!.on(.message(.stored(key: k, version: object.version), from: r), now: t0)
        }
        // The silent replica dies: its successor gets the store at once.
        let smaller = ids.filter { $0 != targets[2] }
        let after = all[p(1)]!.on(.members(smaller), now: at(ms: 10))
        let successor = Rendezvous.replicas(of: k, among: smaller, count: 3)[2]
        #expect(stores(after).map(\.1) == [successor])
        let done = all[p(1)]!.on(.message(.stored(key: k, version: object.version), from: successor), now: at(ms: 11))
        #expect(acked(done).count == 1)
    }

    /// Runs a get from `reader` to completion over a lossless, instant network.
    private func runGet(_ all: inout [PeerID: PlacementMachine], reader: PeerID, requestID: UInt64, key: UInt64)
        -> (result: [PlacementDirective], asked: [PeerID])
    {
        var queue = sends(all[reader]!.on(.get(requestID: requestID, key: key), now: t0))
        var asked: [PeerID] = []
        var result: [PlacementDirective] = []
        while !queue.isEmpty {
            let (msg, to) = queue.removeFirst()
            asked.append(to)
            for (answer, _) in sends(all[to]!.on(.message(msg, from: reader), now: t0)) {
                let d = all[reader]!.on(.message(answer, from: to), now: t0)
                queue += sends(d)
                result += d.filter { if case .getResult = $0 { return true } else { return false } }
            }
        }
        return (result, asked)
    }

    @Test func getFallsBackWhenReplicasLackTheKey() {
        let ids = peers(1...6)
        var all = machines(ids)
        let k: UInt64 = 77
        let ranking = ranked(k, ids)
        let reader = ranking.last!  // not among the first five asked
        let object = StoredObject(key: k, version: ObjectVersion(stamp: 1, writer: p(1)), value: value(1))
        // Only the fourth-ranked peer holds it (say, an old replica).
        _ = all[ranking[3]]!.on(.recovered([object]), now: t0)
        let found = runGet(&all, reader: reader, requestID: 1, key: k)
        #expect(found.result == [.getResult(requestID: 1, object: object)])
        #expect(found.asked == Array(ranking.prefix(4)))
        // The newest of several versions wins.
        let newer = StoredObject(key: k, version: ObjectVersion(stamp: 2, writer: p(1)), value: value(2))
        _ = all[ranking[1]]!.on(.recovered([newer]), now: t0)
        #expect(runGet(&all, reader: reader, requestID: 2, key: k).result == [.getResult(requestID: 2, object: newer)])
        // A key no one holds: every peer up to maxGetPeers is asked, then nil.
        let none = runGet(&all, reader: reader, requestID: 3, key: 1_000)
        #expect(none.result == [.getResult(requestID: 3, object: nil)])
        #expect(none.asked.count == 5 || (none.asked.count == 4 && !none.asked.contains(reader)))
    }

    @Test func getAnswersAfterBoundedRoundsWhenPeersAreSilent() {
        let ids = peers(1...6)
        var m = machines(ids)[p(1)]!
        let first = sends(m.on(.get(requestID: 3, key: 5), now: t0))
        #expect(first.count == 3 || first.count == 2)  // the reader answers itself when it is a replica
        let round2 = m.on(.timer(.get(serial: 1)), now: at(ms: 100))
        #expect(!sends(round2).isEmpty)
        let round3 = m.on(.timer(.get(serial: 1)), now: at(ms: 200))
        #expect(!sends(round3).isEmpty)
        let last = m.on(.timer(.get(serial: 1)), now: at(ms: 300))
        #expect(last == [.getResult(requestID: 3, object: nil)])
        #expect(m.on(.timer(.get(serial: 1)), now: at(ms: 400)).isEmpty)
    }

    @Test func repairOffersOnlyWhatIsUnconfirmedAndBoundsTransfers() {
        var s = PlacementSettings()
        s.maxTransfersInFlight = 2
        s.maxRepairPerPass = 3
        var m = PlacementMachine(id: p(1), settings: s)
        let objects = (UInt64(0)..<10).map {
            StoredObject(key: $0, version: ObjectVersion(stamp: 1, writer: p(1)), value: value($0))
        }
        _ = m.on(.recovered(objects), now: t0)
        let first = m.on(.members(peers(1...4)), now: t0)
        #expect(first.contains(.schedule(.repair(tick: 0), after: .seconds(1))))
        #expect(m.counters.offersSent == 2 && m.transfersInFlight == 2)
        // A stale repair timer does nothing.
        #expect(m.on(.timer(.repair(tick: 7)), now: t0).isEmpty)
        // Answer every offer with `have`: each answer frees room and resumes the walk at once,
        // never beyond the bound. Then passes go on until one offers nothing.
        var offers = sends(first)
        var passes: UInt64 = 0
        while !offers.isEmpty && passes < 50 {
            while !offers.isEmpty {
                let (msg, to) = offers.removeFirst()
                guard case .offer(let k, let v) = msg else { continue }
                offers += sends(m.on(.message(.have(key: k, version: v), from: to), now: t0))
                #expect(m.transfersInFlight <= 2)
            }
            #expect(m.transfersInFlight == 0)
            offers = sends(m.on(.timer(.repair(tick: passes)), now: t0))
            passes += 1
        }
        // Each key's replicas other than p1 were offered exactly once.
        let expected = objects.reduce(0) { n, o in
            n + Rendezvous.replicas(of: o.key, among: peers(1...4), count: 3).filter { $0 != p(1) }.count
        }
        #expect(m.counters.offersSent == expected)
        // A view change forgets the confirmations: everything is offered again.
        _ = m.on(.members(peers(1...5)), now: t0)
        #expect(m.counters.offersSent == expected + 2)
    }
}

// MARK: - A small deterministic multi-peer harness

/// Routes directives between machines through a FIFO-by-time queue on a virtual clock, with
/// seeded loss, duplication, corruption and delay jitter (reordering). It checks two safety rules
/// as it goes: a `stored` ack never leaves before the version is on the sender's disk, and a
/// put is acknowledged only when every current replica has it on disk.
private struct PlacementCluster {
    enum Item { case deliver(PlacementMessage, from: PeerID, to: PeerID), timer(PlacementTimer, PeerID) }
    struct Entry { var at: Instant; var seq: UInt64; var item: Item }

    let settings: PlacementSettings
    var machines: [PlacementMachine] = []  // peer p(i) at index i - 1
    var live: [PeerID] = []
    var now = Instant.zero
    var queue: [Entry] = []  // sorted by (at, seq) descending: the next entry is last
    var seq: UInt64 = 0
    var rng: SeededGenerator
    var loss = 0.0
    var duplication = 0.0
    var corruption = 0.0
    var jitterMicroseconds: UInt64 = 0
    var disk: [[UInt64: ObjectVersion]] = []
    var violations: [String] = []
    var acknowledged: [UInt64: (key: UInt64, version: ObjectVersion)] = [:]
    var failed: [UInt64: String] = [:]
    var results: [UInt64: StoredObject?] = [:]
    var nextRequest: UInt64 = 1

    init(peers n: Int, settings: PlacementSettings = PlacementSettings(), seed: UInt64 = 1) {
        self.settings = settings
        rng = SeededGenerator(seed: seed)
        for _ in 0..<n { addMachine() }
        setView()
    }

    func machine(_ peer: PeerID) -> PlacementMachine { machines[Int(peer.raw) - 1] }

    private mutating func addMachine() {
        let id = p(UInt64(machines.count + 1))
        machines.append(PlacementMachine(id: id, settings: settings))
        disk.append([:])
        live.append(id)
    }

    mutating func setView() {
        for peer in live { feed(peer, .members(live)) }
    }

    mutating func kill(_ peer: PeerID) {
        live.removeAll { $0 == peer }
        setView()
    }

    @discardableResult mutating func join() -> PeerID {
        addMachine()
        setView()
        return live.last!
    }

    mutating func put(at peer: PeerID, key: UInt64, value: ObjectValue) -> UInt64 {
        let rid = nextRequest
        nextRequest += 1
        feed(peer, .put(requestID: rid, key: key, value: value))
        return rid
    }

    mutating func get(at peer: PeerID, key: UInt64) -> UInt64 {
        let rid = nextRequest
        nextRequest += 1
        feed(peer, .get(requestID: rid, key: key))
        return rid
    }

    mutating func feed(_ peer: PeerID, _ event: PlacementEvent) {
        let out = machines[Int(peer.raw) - 1].on(event, now: now)
        apply(out, from: peer)
    }

    private mutating func apply(_ out: [PlacementDirective], from peer: PeerID) {
        let i = Int(peer.raw) - 1
        for d in out {
            switch d {
            case .send(let message, let to):
                if case .stored(let key, let version) = message, (disk[i][key].map { $0 < version } ?? true) {
                    violations.append("\(peer) acked \(key)@\(version) before persisting it")
                }
                send(message, from: peer, to: to)
            case .schedule(let timer, let after):
                enqueue(now + after, .timer(timer, peer))
            case .persist(let object):
                if let old = disk[i][object.key], old >= object.version {
                    violations.append("\(peer) persisted \(object.key)@\(object.version) over \(old)")
                }
                disk[i][object.key] = object.version
            case .putAcknowledged(let rid, let key, let version):
                for r in Rendezvous.replicas(of: key, among: live, count: settings.replicas)
                where (disk[Int(r.raw) - 1][key].map { $0 < version } ?? true) {
                    violations.append("put \(rid) of \(key)@\(version) acknowledged before replica \(r) persisted it")
                }
                acknowledged[rid] = (key, version)
            case .putFailed(let rid, _, let reason): failed[rid] = reason
            case .getResult(let rid, let object): results[rid] = object
            case .getFailed(let rid, _, let reason): failed[rid] = reason
            }
        }
    }

    private mutating func send(_ message: PlacementMessage, from: PeerID, to: PeerID) {
        if loss > 0, rng.nextUnitDouble() < loss { return }
        var m = message
        if corruption > 0, rng.nextUnitDouble() < corruption {
            switch m {
            case .store(var o):
                o.value.content ^= 1
                m = .store(o)
            case .fetched(let rid, let key, var o?):
                o.value.checksum ^= 1
                m = .fetched(requestID: rid, key: key, object: o)
            default: break
            }
        }
        enqueue(now + .microseconds(1_000 + Int64(jitter())), .deliver(m, from: from, to: to))
        if duplication > 0, rng.nextUnitDouble() < duplication {
            enqueue(now + .microseconds(1_000 + Int64(jitter())), .deliver(message, from: from, to: to))
        }
    }

    private mutating func jitter() -> UInt64 {
        jitterMicroseconds == 0 ? 0 : rng.next() % (jitterMicroseconds + 1)
    }

    private mutating func enqueue(_ at: Instant, _ item: Item) {
        seq += 1
        let e = Entry(at: at, seq: seq, item: item)
        var lo = 0
        var hi = queue.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let q = queue[mid]
            if q.at > e.at || (q.at == e.at && q.seq > e.seq) { lo = mid + 1 } else { hi = mid }
        }
        queue.insert(e, at: lo)
    }

    mutating func run(for d: Interval) {
        let end = now + d
        while let e = queue.last, e.at <= end {
            queue.removeLast()
            now = e.at
            switch e.item {
            case .deliver(let m, let from, let to): if live.contains(to) { feed(to, .message(m, from: from)) }
            case .timer(let t, let peer): if live.contains(peer) { feed(peer, .timer(t)) }
            }
        }
        now = end
    }

    /// The latest acknowledged version of each key.
    var latestAcknowledged: [UInt64: ObjectVersion] {
        var latest: [UInt64: ObjectVersion] = [:]
        for (_, a) in acknowledged where latest[a.key].map({ $0 < a.version }) ?? true { latest[a.key] = a.version }
        return latest
    }

    /// Keys whose latest acknowledged version is missing on one of their current replicas.
    func unrepaired() -> [UInt64] {
        latestAcknowledged.keys.sorted().filter { key in
            let v = latestAcknowledged[key]!
            return Rendezvous.replicas(of: key, among: live, count: settings.replicas).contains { r in
                (machine(r).held(key)?.version).map { $0 < v } ?? true
            }
        }
    }

    /// Keys whose latest acknowledged version no live peer holds.
    func lost() -> [UInt64] {
        latestAcknowledged.keys.sorted().filter { key in
            let v = latestAcknowledged[key]!
            return !live.contains { (machine($0).held(key)?.version).map { $0 >= v } ?? false }
        }
    }

    /// Runs in steps until every acknowledged key is on all its current replicas (or `limit`).
    mutating func runUntilRepaired(step: Interval = .milliseconds(100), limit: Interval = .seconds(30)) -> Bool {
        let end = now + limit
        while now < end {
            run(for: step)
            if unrepaired().isEmpty { return true }
        }
        return false
    }
}

extension PlacementTests {
    @Suite struct ClusterTests {
        @Test func objectsFollowAReplicaThatLeaves() {
            var c = PlacementCluster(peers: 6)
            let k: UInt64 = 1234
            let rid = c.put(at: p(1), key: k, value: value(5, bytes: 4_096))
            c.run(for: .milliseconds(20))
            let version = c.acknowledged[rid]?.version
            #expect(version != nil)
            let before = Rendezvous.replicas(of: k, among: c.live, count: 3)
            for r in before { #expect(c.machine(r).held(k)?.version == version) }
            // One replica leaves the view; the others hold the object and copy it to its successor.
            c.kill(before[1])
            let after = Rendezvous.replicas(of: k, among: c.live, count: 3)
            let newcomer = after.first { !before.contains($0) }!
            #expect(c.machine(newcomer).held(k) == nil)
            c.run(for: .seconds(3))
            for r in after { #expect(c.machine(r).held(k)?.version == version, "\(r)") }
            #expect(c.violations == [])
            let sent = c.live.map { c.machine($0).counters.transfersSent }.reduce(0, +)
            let bytes = c.live.map { c.machine($0).counters.bytesTransferred }.reduce(0, +)
            #expect(sent >= 1 && bytes == UInt64(sent) * 4_096)
            // The copies off the replica set are kept (never deleted).
            let holders = c.live.filter { c.machine($0).held(k) != nil }
            #expect(Set(after).isSubset(of: Set(holders)))
        }

        @Test func manyObjectsMigrateToAJoiningPeerAndAfterADeparture() {
            var s = PlacementSettings()
            s.maxRepairPerPass = 16
            s.maxTransfersInFlight = 4
            var c = PlacementCluster(peers: 6, settings: s)
            for k in UInt64(0)..<100 { _ = c.put(at: p(1 + k % 6), key: k, value: value(k)) }
            c.run(for: .milliseconds(50))
            #expect(c.acknowledged.count == 100)
            let newcomer = c.join()
            #expect(!c.unrepaired().isEmpty)
            let joined = c.runUntilRepaired()
            #expect(joined)
            let moved = (UInt64(0)..<100).filter { c.machine(newcomer).held($0) != nil }.count
            #expect(moved > 20 && moved < 70)  // ~3/7 of the keys
            c.kill(p(2))
            #expect(c.lost().isEmpty)
            let left = c.runUntilRepaired()
            #expect(left)
            #expect(c.violations == [])
            // Nothing is left in flight once repaired, and a later pass offers nothing new.
            c.run(for: .seconds(10))  // every walk has gone round (16 keys a second)
            let offers = c.live.map { c.machine($0).counters.offersSent }.reduce(0, +)
            c.run(for: .seconds(3))
            #expect(c.live.map { c.machine($0).counters.offersSent }.reduce(0, +) == offers)
        }

        /// Random puts, random removals (fewer than R at a time) and joins, repair in between, with
        /// loss, duplication, corruption and reordering: acknowledged data is never lost, and after
        /// repair it is on all its current replicas and read back by a get.
        @Test(arguments: 0..<50)
        func acknowledgedObjectsSurviveChurnAndRepair(seed: UInt64) {
            var s = PlacementSettings()
            s.repairInterval = .milliseconds(100)
            s.storeTimeout = .milliseconds(20)
            s.transferTimeout = .milliseconds(30)
            s.getTimeout = .milliseconds(20)
            s.maxRepairPerPass = 16
            s.maxTransfersInFlight = 8
            var c = PlacementCluster(peers: 7, settings: s, seed: seed)
            c.loss = 0.05
            c.duplication = 0.05
            c.corruption = 0.02
            c.jitterMicroseconds = 3_000
            var rng = SeededGenerator(seed: seed ^ 0xC0FFEE)
            func pick(_ list: [PeerID]) -> PeerID { list[Int(rng.next() % UInt64(list.count))] }

            for round in 0..<6 {
                // A burst of puts; the membership changes somewhere in it (puts are in flight).
                let puts = 5 + Int(rng.next() % 11)
                let change = Int(rng.next() % UInt64(puts + 1))
                for i in 0...puts {
                    if i == change {
                        if rng.next() % 10 < 3 {
                            c.join()
                        } else {
                            let removals = 1 + Int(rng.next() % UInt64(s.replicas - 1))
                            for _ in 0..<removals where c.live.count > s.replicas + 1 { c.kill(pick(c.live)) }
                        }
                        #expect(c.lost() == [], "seed \(seed) round \(round): lost after a membership change")
                    }
                    guard i < puts else { break }
                    let key = rng.next() % 24
                    _ = c.put(at: pick(c.live), key: key, value: value(rng.next(), bytes: 1 + rng.next() % 10_000))
                    c.run(for: .microseconds(Int64(rng.next() % 5_000)))
                }
                c.run(for: .milliseconds(200))
                let repaired = c.runUntilRepaired()
                #expect(repaired, "seed \(seed) round \(round): unrepaired \(c.unrepaired())")
            }
            #expect(!c.acknowledged.isEmpty, "seed \(seed)")
            #expect(c.lost() == [], "seed \(seed)")
            #expect(c.unrepaired() == [], "seed \(seed)")
            #expect(c.violations == [], "seed \(seed)")
            // Reads on a quiet network find at least the latest acknowledged version.
            c.loss = 0
            c.duplication = 0
            c.corruption = 0
            var reads: [UInt64: (key: UInt64, version: ObjectVersion)] = [:]
            for (key, version) in c.latestAcknowledged.sorted(by: { $0.key < $1.key }) {
                reads[c.get(at: pick(c.live), key: key)] = (key, version)
            }
            c.run(for: .seconds(1))
            for (rid, expected) in reads.sorted(by: { $0.key < $1.key }) {
                let found = c.results[rid] ?? nil
                #expect(
                    found.map { $0.key == expected.key && $0.version >= expected.version } ?? false,
                    "seed \(seed): get of \(expected.key) found \(String(describing: found?.version)), acked \(expected.version)"
                )
            }
            let corrupt = c.machines.map(\.counters.corruptTransfers).reduce(0, +)
            #expect(corrupt > 0 || c.acknowledged.count < 10, "seed \(seed): corruption never exercised")
        }
    }
}
