/// The persistent-object placement machine of one peer: where named objects live, how a put
/// becomes durable, how a get finds the newest version, and how objects follow membership
/// changes (re-replication). One machine plays every role at once:
///
/// - **placement**: an object's replicas are the R live peers of highest rendezvous weight
///   (`Rendezvous.replicas`), computed from the `.members` view; no table, no coordination.
/// - **coordinator** (`.put`): the peer a client put arrives at stamps a version
///   `(max(now, highest stamp seen for the key + 1), self)`, so versions of a key only grow at
///   each coordinator and last-writer-wins orders concurrent writers. It sends `store` to each
///   replica (storing locally if it is one), and acknowledges once
///   `min(writeQuorum, R, max(live, clusterSize))` current replicas answered `stored` (an isolated
///   peer cannot acknowledge alone). Unconfirmed replicas get `store` again every
///   `storeTimeout`, up to `maxStoreAttempts`; then the put fails. A view change while the put
///   is pending recomputes its replicas and sends to the new ones at once.
/// - **replica** (`store`): keeps a version only if it is newer than the one held (so duplicated,
///   reordered and stale stores are harmless), persists it, then acks in the same batch. An
///   older version is acked too: the replica holds something at least as new. Values whose
///   checksum does not match are dropped and counted; the sender's timeout sends them again.
/// - **reader** (`.get`): asks the key's R replicas (highest weight first), waits for all of them
///   (or `getTimeout` rounds), and answers with the newest version found. If all of them lack
///   the key it falls back down the ranking, one peer at a time; a silent peer is asked again
///   each round and the next peer of the ranking is asked too; at most `maxGetPeers` peers and
///   `maxGetRounds` rounds.
/// - **repairer** (`.members` change, and every `repairInterval`): it walks the objects it holds,
///   at most `maxRepairPerPass` per pass from a cursor over the sorted keys (so every object is
///   visited), and offers each to every current replica of it that has not confirmed holding
///   this version since the last view change. The target answers `have` or `want`; on `want`
///   the holder sends `store`, which the target acks with `stored`. At most
///   `maxTransfersInFlight` offers and stores are outstanding; a pass that reaches the bound
///   stops, and each answered transfer resumes the walk at once (so repair goes at the pace of
///   the answers, not of the timer). Each offer or store is sent again after `transferTimeout`,
///   up to `maxTransferAttempts`, and otherwise left to a later pass. Once every holder's walk
///   has gone round, every object is on each of its current R replicas (when that many peers
///   are live). The periodic timer starts with the first `.members` event.
///
/// Safety: a peer never deletes an object, even when it is no longer among its replicas. The
/// copy costs space but keeps the data when several views disagree or a repair is cut short;
/// garbage collection of surplus copies is left to a later protocol (it needs the replicas'
/// confirmation that they hold the version first).
///
/// Durability contract with the shell: directives are applied in order, and a `persist` is
/// durable before any later `send` of the same batch leaves (the `stored` ack follows it).
///
/// Known costs and limits: after a view change every holder exchanges one `offer`/`have` per
/// (object, other replica) even when nothing moves, and a replica that received a put offers it
/// to the others on its next pass. Confirmations are forgotten only on a view change, so a peer
/// that lost its shard and came back without the others seeing it leave is not refilled until
/// the next view change. The highest stamp seen is remembered per key (one entry per key the
/// peer has held, coordinated or read). Last-writer-wins trusts the writers' clocks: a version
/// stamped far ahead (a clock off by years, or a hostile peer) wins over every later put of its
/// key, and one stamped `ObjectVersion.maxStamp` makes every later put of it fail (said, not
/// acknowledged and lost).
///
/// Pure: it reads no clock (time comes in as `now`), uses no randomness, does no IO and iterates
/// no unordered collection where the order matters.
public struct PlacementMachine: Sendable {
    public let id: PeerID
    /// The settings in use (already clamped to their documented ranges).
    public let settings: PlacementSettings
    public private(set) var counters = PlacementCounters()

    private var nextSerial: UInt64 = 1

    // View.
    private var live: [PeerID]  // sorted, unique, self included
    /// Members known, dead ones included (`.clusterSize`); 0 until told (then the live view counts).
    private var clusterSize = 0
    private var started = false
    private var repairTick: UInt64 = 0

    // Store.
    private var objects: [UInt64: StoredObject] = [:]
    private var keys: [UInt64] = []  // sorted keys of `objects`
    /// Highest version stamp seen per key (held, coordinated, stored or read; an offer raises an
    /// entry but makes none).
    private var seen: [UInt64: UInt64] = [:]

    // Repair.
    /// Peers known to hold `version` (or newer) of a key since the last view change.
    private struct Confirmed { var version: ObjectVersion; var peers: [PeerID] }
    private var confirmed: [UInt64: Confirmed] = [:]
    /// The key the next pass starts at (the first held key not below it; wraps around).
    private var cursor: UInt64 = 0
    /// The last pass stopped at `maxTransfersInFlight`: a finished transfer resumes the walk.
    private var walkBlocked = false
    private struct Route: Hashable { var key: UInt64; var peer: PeerID }
    /// An outstanding offer (`storing == false`) or the store that answered a `want`. Each
    /// phase has its own serial, so the offer's timer is stale once the store leaves.
    private struct Transfer { var route: Route; var version: ObjectVersion; var storing: Bool; var attempts: Int }
    private var transfers: [UInt64: Transfer] = [:]  // by serial
    private var transferByRoute: [Route: UInt64] = [:]

    // Coordinator.
    private struct PendingPut {
        var requestID: UInt64
        var object: StoredObject
        var targets: [PeerID]  // current replicas, highest weight first
        var confirmed: [PeerID]  // peers that answered `stored` (or self after storing)
        var sent: [PeerID]  // peers a store went to
        var attempts: Int
    }
    private var puts: [UInt64: PendingPut] = [:]  // by serial
    private struct VersionRef: Hashable { var key: UInt64; var version: ObjectVersion }
    private var putByVersion: [VersionRef: UInt64] = [:]
    private var putRequestIDs: Set<UInt64> = []

    // Reader.
    private struct PendingGet {
        var requestID: UInt64
        var key: UInt64
        var candidates: [PeerID]  // ranking, highest weight first, at most maxGetPeers
        var asked: [PeerID]  // a prefix of candidates
        var answered: [PeerID]
        var best: StoredObject?
        var rounds: Int
        var corruptRetries: Int
    }
    private var gets: [UInt64: PendingGet] = [:]  // by serial

    public init(id: PeerID, settings: PlacementSettings = PlacementSettings()) {
        self.id = id
        self.settings = settings.clamped
        self.live = [id]
    }

    // MARK: Queries

    /// The version of `key` this peer holds, if any.
    public func held(_ key: UInt64) -> StoredObject? { objects[key] }
    /// Every object this peer holds, sorted by key.
    public var heldObjects: [StoredObject] { keys.map { objects[$0]! } }
    /// How many objects this peer holds.
    public var heldCount: Int { keys.count }
    /// Keys with a highest stamp seen remembered (for tests of its bound).
    var seenCount: Int { seen.count }
    /// The live view in use (sorted, self included).
    public var liveView: [PeerID] { live }
    /// The current replicas of `key` in this peer's view, highest weight first.
    public func replicas(of key: UInt64) -> [PeerID] {
        Rendezvous.replicas(of: key, among: live, count: settings.replicas)
    }
    /// Puts and gets this peer coordinates now.
    public var pendingRequests: Int { puts.count + gets.count }
    /// Repair offers and stores outstanding now.
    public var transfersInFlight: Int { transfers.count }

    // MARK: Events

    public mutating func on(_ event: PlacementEvent, now: Instant, into out: inout [PlacementDirective]) {
        switch event {
        case .members(let peers): onMembers(peers, into: &out)
        case .clusterSize(let n): clusterSize = max(0, n)
        case .put(let rid, let key, let value): onPut(requestID: rid, key: key, value: value, now: now, into: &out)
        case .get(let rid, let key): onGet(requestID: rid, key: key, into: &out)
        case .message(let message, let from): onMessage(message, from: from, into: &out)
        case .timer(let timer): onTimer(timer, into: &out)
        case .recovered(let list): onRecovered(list)
        }
    }

    /// Convenience for tests and shells that prefer a returned array.
    public mutating func on(_ event: PlacementEvent, now: Instant) -> [PlacementDirective] {
        var out: [PlacementDirective] = []
        on(event, now: now, into: &out)
        return out
    }

    private mutating func serial() -> UInt64 {
        defer { nextSerial += 1 }
        return nextSerial
    }

    /// Whether a message from another peer is within bounds. One that is not is dropped and
    /// counted (`messagesDropped`), never acted on: its sender may be buggy, or hostile. A stamp
    /// above `ObjectVersion.maxStamp` would pin its key for good (no later put could be ordered
    /// after it: a put at `UInt64.max` was acknowledged while the held version stayed the other).
    /// Keys and request ids need no check (any value is one); the object table's growth is bounded
    /// where objects are kept (`maxObjects`). O(1).
    private func acceptable(_ message: PlacementMessage) -> Bool {
        switch message {
        case .store(let object): return object.version.stamp <= ObjectVersion.maxStamp
        case .stored(_, let v), .offer(_, let v), .want(_, let v), .have(_, let v):
            return v.stamp <= ObjectVersion.maxStamp
        case .fetch: return true
        case .fetched(_, _, let object): return (object?.version.stamp ?? 0) <= ObjectVersion.maxStamp
        }
    }

    private mutating func onMessage(_ message: PlacementMessage, from: PeerID, into out: inout [PlacementDirective]) {
        guard acceptable(message) else {
            counters.messagesDropped += 1
            return
        }
        switch message {
        case .store(let object): onStore(object, from: from, into: &out)
        case .stored(let key, let version): onStored(key: key, version: version, from: from, into: &out)
        case .offer(let key, let version): onOffer(key: key, version: version, from: from, into: &out)
        case .want(let key, let version): onWant(key: key, version: version, from: from, into: &out)
        case .have(let key, let version): onHave(key: key, version: version, from: from, into: &out)
        case .fetch(let rid, let key):
            out.append(.send(.fetched(requestID: rid, key: key, object: objects[key]), to: from))
        case .fetched(let rid, let key, let object):
            onFetched(serial: rid, key: key, object: object, from: from, into: &out)
        }
    }

    private mutating func onTimer(_ timer: PlacementTimer, into out: inout [PlacementDirective]) {
        switch timer {
        case .put(let s): onPutTimeout(s, into: &out)
        case .get(let s): onGetTimeout(s, into: &out)
        case .transfer(let s): onTransferTimeout(s, into: &out)
        case .repair(let tick):
            guard tick == repairTick else { return }  // stale: a newer chain runs
            repairTick += 1
            out.append(.schedule(.repair(tick: repairTick), after: settings.repairInterval))
            repairPass(into: &out)
        }
    }

    // MARK: Store

    private mutating func noteSeen(_ key: UInt64, _ stamp: UInt64) {
        if stamp > seen[key, default: 0] { seen[key] = stamp }
    }

    private func insertionIndex(_ key: UInt64) -> Int {
        var lo = 0
        var hi = keys.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if keys[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Keeps `object` if it is newer than the held version. Returns whether it was kept.
    private mutating func keep(_ object: StoredObject) -> Bool {
        noteSeen(object.key, object.version.stamp)
        if let old = objects[object.key] {
            guard object.version > old.version else { return false }
        } else {
            keys.insert(object.key, at: insertionIndex(object.key))
        }
        objects[object.key] = object
        return true
    }

    /// Stores a received or coordinated version locally: persist if newer. Returns whether this
    /// peer holds this version or a newer one now: false when it refused a new key (it holds
    /// `maxObjects` objects).
    @discardableResult
    private mutating func storeLocally(_ object: StoredObject, into out: inout [PlacementDirective]) -> Bool {
        guard objects[object.key] != nil || objects.count < settings.maxObjects else {
            counters.objectsRefused += 1
            return false
        }
        if keep(object) {
            counters.objectsStored += 1
            out.append(.persist(object))
        } else if objects[object.key]?.version == object.version {
            counters.duplicatesIgnored += 1
        } else {
            counters.staleStores += 1
        }
        return true
    }

    /// A replica's rule: verify, keep if newer (persist), and ack in any case, after the persist.
    /// A corrupt value is dropped unanswered: the sender's timeout sends it again.
    private mutating func onStore(_ object: StoredObject, from: PeerID, into out: inout [PlacementDirective]) {
        guard object.value.isIntact else {
            counters.corruptTransfers += 1
            return
        }
        counters.storesReceived += 1
        guard storeLocally(object, into: &out) else { return }  // refused (full): no ack, the put is not durable here
        out.append(.send(.stored(key: object.key, version: object.version), to: from))
    }

    /// Objects a restarted peer's shard kept. They are durable already: nothing is persisted.
    private mutating func onRecovered(_ list: [StoredObject]) {
        for object in list {
            guard object.value.isIntact else {
                counters.corruptRecovered += 1
                continue
            }
            _ = keep(object)
        }
    }

    /// `peer` holds `version` of `key` or a newer one. Only useful while it covers what we hold.
    private mutating func confirm(_ key: UInt64, _ peer: PeerID, _ version: ObjectVersion) {
        guard let held = objects[key], version >= held.version else { return }
        if var c = confirmed[key], c.version == held.version {
            if !c.peers.contains(peer) { c.peers.append(peer) }
            confirmed[key] = c
        } else {
            confirmed[key] = Confirmed(version: held.version, peers: [peer])
        }
    }

    private func isConfirmed(_ key: UInt64, _ peer: PeerID, _ version: ObjectVersion) -> Bool {
        guard let c = confirmed[key] else { return false }
        return c.version >= version && c.peers.contains(peer)
    }

    // MARK: View

    private mutating func onMembers(_ peers: [PeerID], into out: inout [PlacementDirective]) {
        var view = peers
        view.append(id)
        view.sort()
        var unique: [PeerID] = []
        unique.reserveCapacity(view.count)
        for p in view where unique.last != p { unique.append(p) }
        if !started {
            started = true
            out.append(.schedule(.repair(tick: repairTick), after: settings.repairInterval))
        } else if unique == live {
            return
        }
        live = unique
        // Confirmations were about the old view: a peer may have restarted empty since.
        confirmed = [:]
        cursor = 0
        // Transfers to peers that left are dropped; a later view brings them back if needed.
        for s in transfers.keys.sorted() {
            guard let t = transfers[s], !isLive(t.route.peer) else { continue }
            transfers[s] = nil
            transferByRoute[t.route] = nil
        }
        for s in puts.keys.sorted() { retarget(put: s, into: &out) }
        repairPass(into: &out)
    }

    private func isLive(_ peer: PeerID) -> Bool {
        var lo = 0
        var hi = live.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if live[mid] < peer { lo = mid + 1 } else { hi = mid }
        }
        return lo < live.count && live[lo] == peer
    }

    // MARK: Coordinator

    private mutating func onPut(
        requestID rid: UInt64, key: UInt64, value: ObjectValue, now: Instant, into out: inout [PlacementDirective]
    ) {
        guard value.isIntact else {
            counters.putsFailed += 1
            out.append(.putFailed(requestID: rid, key: key, reason: "the value's checksum does not match its content"))
            return
        }
        guard !putRequestIDs.contains(rid) else {  // the client repeated a pending put: it will be answered
            counters.duplicatesIgnored += 1
            return
        }
        guard pendingRequests < settings.maxPendingRequests else {
            counters.putsFailed += 1
            out.append(
                .putFailed(
                    requestID: rid, key: key,
                    reason: "too many pending requests at \(id) (maxPendingRequests \(settings.maxPendingRequests))"))
            return
        }
        let last = seen[key, default: 0]
        guard last < ObjectVersion.maxStamp else {
            counters.putsFailed += 1
            out.append(
                .putFailed(
                    requestID: rid, key: key,
                    reason: "key \(key) has a version stamped \(last): no later version can be made"))
            return
        }
        let clock = UInt64(max(0, now.nanoseconds))
        let stamp = max(clock, last + 1)
        noteSeen(key, stamp)
        let object = StoredObject(key: key, version: ObjectVersion(stamp: stamp, writer: id), value: value)
        let s = serial()
        puts[s] = PendingPut(requestID: rid, object: object, targets: [], confirmed: [], sent: [], attempts: 1)
        putByVersion[VersionRef(key: key, version: object.version)] = s
        putRequestIDs.insert(rid)
        retarget(put: s, into: &out)
        if puts[s] != nil {
            out.append(.schedule(.put(serial: s), after: settings.timeout(settings.storeTimeout, bytes: value.bytes)))
        }
    }

    /// Recomputes a pending put's replicas from the current view, sends `store` to those not sent
    /// to yet (storing locally if this peer is one), and acknowledges it if that is enough.
    private mutating func retarget(put s: UInt64, into out: inout [PlacementDirective]) {
        guard var put = puts[s] else { return }
        put.targets = Rendezvous.replicas(of: put.object.key, among: live, count: settings.replicas)
        for t in put.targets where !put.sent.contains(t) {
            put.sent.append(t)
            if t == id {
                if storeLocally(put.object, into: &out) { put.confirmed.append(id) }
            } else {
                out.append(.send(.store(put.object), to: t))
            }
        }
        puts[s] = put
        finishIfAcknowledged(put: s, into: &out)
    }

    private func confirmations(_ put: PendingPut) -> (have: Int, need: Int) {
        let have = put.targets.reduce(0) { $0 + (put.confirmed.contains($1) ? 1 : 0) }
        // A shrunken view does not lower the bar: a peer that sees only itself cannot ack alone.
        let replicas = max(put.targets.count, min(settings.replicas, clusterSize))
        return (have, min(settings.writeQuorum, replicas))
    }

    private mutating func finishIfAcknowledged(put s: UInt64, into out: inout [PlacementDirective]) {
        guard let put = puts[s] else { return }
        let (have, need) = confirmations(put)
        guard have >= need else { return }
        removePut(s)
        counters.putsAcknowledged += 1
        out.append(.putAcknowledged(requestID: put.requestID, key: put.object.key, version: put.object.version))
    }

    private mutating func removePut(_ s: UInt64) {
        guard let put = puts.removeValue(forKey: s) else { return }
        putByVersion[VersionRef(key: put.object.key, version: put.object.version)] = nil
        putRequestIDs.remove(put.requestID)
    }

    /// A `stored` ack: confirms a pending put's replica, or completes a repair store. Either way,
    /// the sender is known to hold this version (used to skip offering it).
    private mutating func onStored(
        key: UInt64, version: ObjectVersion, from: PeerID, into out: inout [PlacementDirective]
    ) {
        confirm(key, from, version)
        var used = false
        if let s = putByVersion[VersionRef(key: key, version: version)], var put = puts[s],
            !put.confirmed.contains(from)
        {
            put.confirmed.append(from)
            puts[s] = put
            used = true
            finishIfAcknowledged(put: s, into: &out)
        }
        let route = Route(key: key, peer: from)
        if let s = transferByRoute[route], let t = transfers[s], t.storing, version >= t.version {
            transferAnswered(s, into: &out)
            used = true
        }
        if !used { counters.duplicatesIgnored += 1 }
    }

    private mutating func onPutTimeout(_ s: UInt64, into out: inout [PlacementDirective]) {
        guard var put = puts[s] else { return }  // finished: stale timer
        guard put.attempts < settings.maxStoreAttempts else {
            let (have, need) = confirmations(put)
            removePut(s)
            counters.putsFailed += 1
            out.append(
                .putFailed(
                    requestID: put.requestID, key: put.object.key,
                    reason:
                        "\(have) of \(need) replicas confirmed the store after \(put.attempts) attempts "
                        + "(replicas \(put.targets))"))
            return
        }
        put.attempts += 1
        for t in put.targets where t != id && !put.confirmed.contains(t) {
            counters.storeRetransmits += 1
            out.append(.send(.store(put.object), to: t))
        }
        puts[s] = put
        out.append(.schedule(.put(serial: s), after: settings.timeout(settings.storeTimeout, bytes: put.object.value.bytes)))
    }

    // MARK: Reader

    private mutating func onGet(requestID rid: UInt64, key: UInt64, into out: inout [PlacementDirective]) {
        guard pendingRequests < settings.maxPendingRequests else {
            counters.getsFailed += 1
            out.append(
                .getFailed(
                    requestID: rid, key: key,
                    reason: "too many pending requests at \(id) (maxPendingRequests \(settings.maxPendingRequests))"))
            return
        }
        let s = serial()
        let candidates = Rendezvous.replicas(of: key, among: live, count: settings.maxGetPeers)
        gets[s] = PendingGet(
            requestID: rid, key: key, candidates: candidates, asked: [], answered: [], best: nil, rounds: 0,
            corruptRetries: 0)
        for _ in 0..<min(settings.replicas, candidates.count) { askNext(get: s, into: &out) }
        advance(get: s, into: &out)
        if gets[s] != nil {
            out.append(.schedule(.get(serial: s), after: settings.getTimeout))
        }
    }

    /// Asks the next candidate of the ranking (self answers at once from its store).
    private mutating func askNext(get s: UInt64, into out: inout [PlacementDirective]) {
        guard var get = gets[s], get.asked.count < get.candidates.count else { return }
        let p = get.candidates[get.asked.count]
        get.asked.append(p)
        if p == id {
            get.answered.append(id)
            get.best = newer(get.best, objects[get.key])
        } else {
            out.append(.send(.fetch(requestID: s, key: get.key), to: p))
        }
        gets[s] = get
    }

    private func newer(_ a: StoredObject?, _ b: StoredObject?) -> StoredObject? {
        guard let a else { return b }
        guard let b else { return a }
        return b.version > a.version ? b : a
    }

    /// When every asked peer answered: finish with the newest version found, or, if none of them
    /// holds the key, ask the next peer of the ranking.
    private mutating func advance(get s: UInt64, into out: inout [PlacementDirective]) {
        while let get = gets[s], get.answered.count == get.asked.count {
            if get.best != nil || get.asked.count == get.candidates.count {
                finish(get: s, into: &out)
                return
            }
            askNext(get: s, into: &out)
        }
    }

    private mutating func finish(get s: UInt64, into out: inout [PlacementDirective]) {
        guard let get = gets.removeValue(forKey: s) else { return }
        counters.getsAnswered += 1
        out.append(.getResult(requestID: get.requestID, object: get.best))
    }

    private mutating func onFetched(
        serial s: UInt64, key: UInt64, object: StoredObject?, from: PeerID, into out: inout [PlacementDirective]
    ) {
        guard var get = gets[s], get.key == key, get.asked.contains(from), !get.answered.contains(from) else {
            counters.duplicatesIgnored += 1
            return
        }
        if let object {
            guard object.key == key, object.value.isIntact else {
                counters.corruptTransfers += 1
                if get.corruptRetries < settings.maxGetRounds {  // ask the same peer again at once
                    get.corruptRetries += 1
                    gets[s] = get
                    out.append(.send(.fetch(requestID: s, key: key), to: from))
                }
                return
            }
            noteSeen(key, object.version.stamp)
        }
        get.answered.append(from)
        get.best = newer(get.best, object)
        gets[s] = get
        advance(get: s, into: &out)
    }

    private mutating func onGetTimeout(_ s: UInt64, into out: inout [PlacementDirective]) {
        guard var get = gets[s] else { return }  // answered: stale timer
        get.rounds += 1
        gets[s] = get
        guard get.rounds < settings.maxGetRounds else {
            finish(get: s, into: &out)
            return
        }
        for p in get.asked where !get.answered.contains(p) {
            out.append(.send(.fetch(requestID: s, key: get.key), to: p))
        }
        askNext(get: s, into: &out)  // fall back past the silent ones
        advance(get: s, into: &out)
        if gets[s] != nil {
            out.append(.schedule(.get(serial: s), after: settings.getTimeout))
        }
    }

    // MARK: Repair

    /// One pass of the walk: up to `maxRepairPerPass` held keys from the cursor, offering each
    /// to its unconfirmed current replicas. Stops early (cursor on the unfinished key) when
    /// `maxTransfersInFlight` transfers are outstanding.
    private mutating func repairPass(into out: inout [PlacementDirective]) {
        walkBlocked = false
        guard !keys.isEmpty else { return }
        var i = insertionIndex(cursor)
        if i == keys.count { i = 0 }
        for _ in 0..<min(settings.maxRepairPerPass, keys.count) {
            guard offerMissing(keys[i], into: &out) else {
                cursor = keys[i]
                walkBlocked = true
                return
            }
            i = (i + 1) % keys.count
        }
        cursor = keys[i]
    }

    /// A transfer was answered: if the walk waits for room, it goes on at once (another pass
    /// from the cursor), so repair runs at the pace of the answers rather than of the timer.
    private mutating func transferAnswered(_ s: UInt64, into out: inout [PlacementDirective]) {
        endTransfer(s)
        if walkBlocked { repairPass(into: &out) }
    }

    /// Offers `key` to each current replica that has not confirmed it and has no transfer
    /// outstanding. Returns false when the in-flight bound left some replica unoffered.
    private mutating func offerMissing(_ key: UInt64, into out: inout [PlacementDirective]) -> Bool {
        guard let object = objects[key] else { return true }
        for r in Rendezvous.replicas(of: key, among: live, count: settings.replicas) where r != id {
            if isConfirmed(key, r, object.version) { continue }
            let route = Route(key: key, peer: r)
            if transferByRoute[route] != nil { continue }
            guard transfers.count < settings.maxTransfersInFlight else { return false }
            let s = serial()
            transfers[s] = Transfer(route: route, version: object.version, storing: false, attempts: 1)
            transferByRoute[route] = s
            counters.offersSent += 1
            out.append(.send(.offer(key: key, version: object.version), to: r))
            out.append(.schedule(.transfer(serial: s), after: settings.transferTimeout))
        }
        return true
    }

    private mutating func endTransfer(_ s: UInt64) {
        guard let t = transfers.removeValue(forKey: s) else { return }
        if transferByRoute[t.route] == s { transferByRoute[t.route] = nil }
    }

    /// Target side of an offer: `have` if it holds this version or a newer one, else `want`.
    private mutating func onOffer(
        key: UInt64, version: ObjectVersion, from: PeerID, into out: inout [PlacementDirective]
    ) {
        let held = objects[key]
        guard held != nil || objects.count < settings.maxObjects else {
            counters.objectsRefused += 1  // unanswered: the offer is retried, then given up
            return
        }
        // The stamp raises this peer's next put of a key it holds or has seen; an offer of a key
        // new here leaves nothing behind (one entry per offered key would grow without bound):
        // its `store` notes the stamp when it arrives.
        if held != nil || seen[key] != nil { noteSeen(key, version.stamp) }
        if let held, held.version >= version {
            out.append(.send(.have(key: key, version: version), to: from))
        } else {
            out.append(.send(.want(key: key, version: version), to: from))
        }
    }

    private mutating func onHave(
        key: UInt64, version: ObjectVersion, from: PeerID, into out: inout [PlacementDirective]
    ) {
        confirm(key, from, version)
        let route = Route(key: key, peer: from)
        if let s = transferByRoute[route], let t = transfers[s], !t.storing, version >= t.version {
            transferAnswered(s, into: &out)
        } else {
            counters.duplicatesIgnored += 1
        }
    }

    /// Holder side: the target lacks the offered version. Send what is held now (it may be newer
    /// than the offer) as a new phase of the transfer with its own timer.
    private mutating func onWant(
        key: UInt64, version: ObjectVersion, from: PeerID, into out: inout [PlacementDirective]
    ) {
        let route = Route(key: key, peer: from)
        guard let s = transferByRoute[route], let t = transfers[s], !t.storing, t.version == version,
            let object = objects[key]
        else {
            counters.duplicatesIgnored += 1  // a repeated want, or one for a transfer given up
            return
        }
        endTransfer(s)
        let next = serial()
        transfers[next] = Transfer(route: route, version: object.version, storing: true, attempts: 1)
        transferByRoute[route] = next
        sendTransfer(object, to: from, into: &out)
        out.append(.schedule(.transfer(serial: next), after: settings.timeout(settings.transferTimeout, bytes: object.value.bytes)))
    }

    private mutating func sendTransfer(_ object: StoredObject, to peer: PeerID, into out: inout [PlacementDirective]) {
        counters.transfersSent += 1
        counters.bytesTransferred &+= object.value.bytes
        out.append(.send(.store(object), to: peer))
    }

    private mutating func onTransferTimeout(_ s: UInt64, into out: inout [PlacementDirective]) {
        guard var t = transfers[s] else { return }  // answered or next phase: stale timer
        guard t.attempts < settings.maxTransferAttempts, let object = objects[t.route.key] else {
            endTransfer(s)
            counters.transfersAbandoned += 1
            return
        }
        t.attempts += 1
        if t.storing {
            t.version = object.version
            sendTransfer(object, to: t.route.peer, into: &out)
        } else {
            counters.offersSent += 1
            out.append(.send(.offer(key: t.route.key, version: t.version), to: t.route.peer))
        }
        transfers[s] = t
        let bytes = t.storing ? object.value.bytes : 0
        out.append(.schedule(.transfer(serial: s), after: settings.timeout(settings.transferTimeout, bytes: bytes)))
    }
}
