/// The work-stealing machine of one peer, playing two roles at once:
///
/// - **thief**: when idle (`.tick`), it picks a victim by power of two choices over the gossiped
///   load view (sample `candidateSample` eligible peers with the seeded generator, take the one
///   with the most ready tasks, ties to the lower `PeerID`), asks it for up to
///   `min(stealBatchMax, freeSlots)` tasks and runs what it is granted; refusals and timeouts
///   back off exponentially (bounded). Late grants are still run; duplicated replies are not.
///   With `requestRetransmits > 0` a timed-out request is first resent under the same id.
///   A victim that granted tasks is asked again first (the *regular victim*), whatever the
///   gossiped view says, until it refuses or a request to it times out: work a victim makes
///   ready one step after another (a stencil's next row) is found in a round trip.
///   Victims are recognised as catalogue-compatible by `PeerLoad.catalogue`, which the shell must
///   fill with `StealCatalogue.summary(keys)`.
/// - **victim**: it answers a request from its ready queue, keeping
///   `max(keepForSelf, own free slots)` tasks, granting only tasks the thief's catalogue runs,
///   those whose inputs the thief holds (most held bytes) first, then in queue order. A
///   duplicated request gets the same answer again and gives nothing new. A request it cannot
///   serve at once is *held* (`holdRequestsFor`, at most `maxHeldRequests`) and served as soon
///   as the shell reports spare ready tasks (`serveHeld`), or refused when its time is up.
///
/// Results are not its business: the owner's `WorkMachine` knows every task's state, applies the
/// first result and discards (and counts) the others, re-openings included.
///
/// Known limit: a restarted thief that reuses request ids may be answered from a victim's grant
/// table with an old grant (its tasks then run twice; the owner discards the second result).
///
/// Pure: it reads no clock (time comes in as `now`), draws every random choice from a
/// `SeededGenerator`, does no IO and iterates no unordered collection where the order matters.
public struct StealMachine: Sendable {
    public let id: PeerID
    /// The settings in use (already clamped to their documented ranges).
    public let settings: StealSettings
    public private(set) var counters = StealCounters()

    private var rng: SeededGenerator

    // Local state.
    private var freeSlots = 0
    private var readyTasks = 0
    private var catalogue: [UInt64] = []  // sorted, unique
    private var catalogueSummary: UInt64 = 0
    private var holding: [VersionRef] = []
    private var view: [MemberInfo] = []  // sorted by peer

    // Thief.
    private enum RequestState: Equatable { case pending, expired, settled }
    private struct SentRequest { var victim: PeerID; var state: RequestState; var attempts = 1 }
    /// The message of each pending request, kept for retransmission.
    private var pendingMessages: [UInt64: StealMessage] = [:]
    private var nextRequestID: UInt64 = 1
    private var sent: [UInt64: SentRequest] = [:]
    private var sentOrder: [UInt64] = []  // FIFO of `sent` keys, oldest first
    private var pending: [UInt64] = []  // request ids awaiting a reply, oldest first
    private var failures = 0
    private var backoffUntil = Instant(nanoseconds: .min)
    /// The victim that granted this thief's last request: asked first next time.
    public private(set) var regularVictim: PeerID?
    /// When each request (attempt) times out: one sweep timer, not a timer per request (a thief
    /// sends one per protocol period while idle; nearly all are answered long before).
    private var timeouts: SweptDeadlines<UInt64>

    // Victim.
    private var queue: [StealableTask] = []
    private struct GrantKey: Hashable { var thief: PeerID; var requestID: UInt64 }
    private var grants: [GrantKey: [StealableTask]] = [:]  // empty = refused
    /// The remembered grants' keys, a ring of at most `grantMemory`: once full, `grantOldest`
    /// is the next to forget (a victim answers a request per idle thief per protocol period).
    private var grantOrder: [GrantKey] = []
    private var grantOldest = 0
    /// Requests waiting for ready tasks, oldest first (so their deadlines ascend).
    private struct HeldRequest {
        var key: GrantKey
        var max: Int
        var catalogue: [UInt64]
        var holding: [VersionRef]
        var until: Instant
    }
    private var held: [HeldRequest] = []
    /// When the pending `heldSweep` timer fires (nil: none pending).
    private var heldSweepAt: Instant?
    /// When this victim may offer work again.
    public private(set) var nextOfferAt = Instant(nanoseconds: .min)

    public init(id: PeerID, settings: StealSettings = StealSettings(), seed: UInt64) {
        self.id = id
        self.settings = settings.clamped
        timeouts = SweptDeadlines(interval: self.settings.stealTimeout)
        self.rng = SeededGenerator(seed: seed ^ (id.raw &* 0x9E37_79B9_7F4A_7C15) ^ 0x5354_4541_4C00_0000)
    }

    // MARK: Queries

    /// Request ids awaiting a reply (at most `maxOutstandingSteals`).
    public var outstandingRequests: [UInt64] { pending }
    /// The back-off the next failure would start from: the current one after a failure.
    public var currentBackoff: Interval { failures == 0 ? .zero : backoff(failures: failures) }
    /// When this thief may try again.
    public var backingOffUntil: Instant { backoffUntil }
    /// The victim's view of its ready queue, minus what it gave away since.
    public var stealableQueue: [StealableTask] { queue }
    /// How many of its queued tasks a victim keeps when it answers a request: `keepForSelf`, or
    /// its free slots if more.
    public var tasksKept: Int { max(settings.keepForSelf, freeSlots) }
    /// The thieves whose requests this victim holds, oldest first.
    public var heldThieves: [PeerID] { held.map(\.key.thief) }
    /// What the thief `thief`'s held request asks for (0: none held).
    public func heldAsk(of thief: PeerID) -> Int { held.first { $0.key.thief == thief }?.max ?? 0 }

    /// Moves `k` entries of `list` (at most all), drawn with the seeded generator, to its front,
    /// in the order drawn (a partial Fisher-Yates); returns how many. Victims and offers are
    /// chosen this way from sorted lists, so a seed replays them.
    private mutating func drawToFront(_ list: inout [PeerID], _ k: Int) -> Int {
        let k = min(k, list.count)
        for i in 0..<k {
            let j = i + Int(rng.next() % UInt64(list.count - i))
            list.swapAt(i, j)
        }
        return k
    }

    /// A number in 0 ..< `bound` from this machine's seeded generator (where a shell's walk over
    /// the members starts).
    public mutating func draw(below bound: Int) -> Int { bound <= 1 ? 0 : Int(rng.next() % UInt64(bound)) }

    // MARK: Events

    public mutating func on(_ event: StealEvent, now: Instant, into out: inout [StealDirective]) {
        switch event {
        case .tick: onTick(now: now, into: &out)
        case .loadView(let members): view = members.sorted { $0.peer < $1.peer }
        case .localState(let free, let ready, let cat, let held):
            freeSlots = max(0, free)
            readyTasks = max(0, ready)
            if cat != catalogue {  // shells pass the same sorted catalogue every time: no re-sort
                catalogue = Array(Set(cat)).sorted()
                catalogueSummary = StealCatalogue.summary(catalogue)
            }
            holding = Array(held.prefix(settings.maxHoldingAdvertised))
        case .stealRequest(let from, let rid, let max, let cat, let held):
            guard cat.count <= Self.maxAdvertised && held.count <= Self.maxAdvertised else {
                counters.messagesDropped += 1
                return
            }
            onRequest(from: from, requestID: rid, max: max, catalogue: cat, holding: held, now: now, into: &out)
        case .stealReply(let from, let rid, let granted):
            guard acceptable(granted) else {
                counters.messagesDropped += 1
                return
            }
            onAnswer(from: from, requestID: rid, granted: granted, now: now, into: &out)
        case .stealRefused(let from, let rid):
            onAnswer(from: from, requestID: rid, granted: [], now: now, into: &out)
        case .stealOffer(let from, let ready, let cat):
            // Taken if this thief has no regular victim and can run some of it: it asks there first.
            guard from != id, ready > 0, cat & catalogueSummary != 0, regularVictim == nil else { return }
            regularVictim = from
            counters.offersTaken += 1
        case .offerWork(let candidates): offerWork(to: candidates, now: now, into: &out)
        case .timer(.timeoutSweep):
            let (due, next) = timeouts.sweep(now: now)
            if let next { out.append(.schedule(.timeoutSweep, after: next)) }
            for entry in due where sent[entry.id]?.attempts == entry.attempt {
                onTimeout(requestID: entry.id, now: now, into: &out)
            }
        case .timer(.retry):
            if freeSlots > 0 && readyTasks == 0 { onTick(now: now, into: &out) }
        case .timer(.heldSweep): sweepHeld(now: now, into: &out)
        case .readyQueue(let tasks): queue = tasks
        case .serveHeld(let thief): serveHeld(thief, into: &out)
        }
    }

    /// Convenience for tests and shells that prefer a returned array.
    public mutating func on(_ event: StealEvent, now: Instant) -> [StealDirective] {
        var out: [StealDirective] = []
        on(event, now: now, into: &out)
        return out
    }

    // MARK: Bounds

    /// Most catalogue keys or held versions a request carries: the largest `maxCatalogueAdvertised`
    /// and `maxHoldingAdvertised` a sender's settings allow. A request's `max` needs no check: the
    /// victim clamps it (`stealBatchMax`, its queue), and one of 0 or less is refused.
    static let maxAdvertised = 4_096
    /// Whether a grant from another peer is within bounds. One that is not is dropped and counted
    /// (`messagesDropped`), never run: its sender may be buggy, or hostile. This thief never asks
    /// for more than `stealBatchMax` tasks, and a task has at most `WorkSettings.maxOutputsPerTask`
    /// accesses. O(message size), no copy.
    private func acceptable(_ granted: [StealableTask]) -> Bool {
        guard granted.count <= settings.stealBatchMax else { return false }
        for t in granted {
            guard t.inputs.count <= WorkSettings.maxOutputsPerTask, t.outputs.count <= WorkSettings.maxOutputsPerTask
            else { return false }
        }
        return true
    }

    // MARK: Thief

    /// The peers a request may go to now: alive, not self, enough ready tasks, a catalogue
    /// summary intersecting ours, no request of ours outstanding. Sorted by peer.
    public func eligibleVictims() -> [PeerID] {
        let busy = pending.compactMap { sent[$0]?.victim }
        return view.filter { m in
            m.peer != id && m.status == .alive
                && Int(m.load.readyTasks) >= settings.minVictimReadyTasks
                && (m.load.catalogue & catalogueSummary) != 0
                && !busy.contains(m.peer)
        }.map(\.peer)
    }

    /// Power of two choices: sample `candidateSample` distinct eligible peers, keep the one with
    /// the most ready tasks (ties: lower `PeerID`).
    private mutating func chooseVictim() -> PeerID? {
        if let regular = regularVictim, !pending.contains(where: { sent[$0]?.victim == regular }) { return regular }
        var candidates = eligibleVictims()
        guard !candidates.isEmpty else { return nil }
        let k = drawToFront(&candidates, settings.candidateSample)
        let members = view
        let ready = { (p: PeerID) -> UInt32 in members.first { $0.peer == p }?.load.readyTasks ?? 0 }
        return candidates[0..<k].min { a, b in
            let ra = ready(a), rb = ready(b)
            return ra != rb ? ra > rb : a < b
        }
    }

    private mutating func onTick(now: Instant, into out: inout [StealDirective]) {
        guard freeSlots > 0, pending.count < settings.maxOutstandingSteals, now >= backoffUntil,
            !catalogue.isEmpty, let victim = chooseVictim()
        else { return }
        let rid = nextRequestID
        nextRequestID += 1
        remember(rid, SentRequest(victim: victim, state: .pending))
        pending.append(rid)
        counters.stealsTried += 1
        let max = min(settings.stealBatchMax, freeSlots)
        let cat = Array(catalogue.prefix(settings.maxCatalogueAdvertised))
        let message = StealMessage.request(requestID: rid, max: max, catalogue: cat, holding: holding)
        pendingMessages[rid] = message
        out.append(.send(message, to: victim))
        timeout(rid, attempt: 1, now: now, into: &out)
    }

    private mutating func timeout(_ rid: UInt64, attempt: Int, now: Instant, into out: inout [StealDirective]) {
        if let d = timeouts.add(rid, attempt: attempt, now: now) { out.append(.schedule(.timeoutSweep, after: d)) }
    }

    private mutating func remember(_ rid: UInt64, _ request: SentRequest) {
        sent[rid] = request
        sentOrder.append(rid)
        while sentOrder.count > settings.requestMemory {
            let old = sentOrder.removeFirst()
            if sent[old]?.state == .pending { sentOrder.append(old); break }  // never forget a pending one
            sent[old] = nil
        }
    }

    /// A reply or refusal (an empty grant). Consumed once: a duplicate of a settled request is
    /// ignored. A grant for a timed-out request is run (late grant). A grant for a request too old
    /// to be remembered is run too, rather than lose tasks the victim gave away (the owner discards
    /// the result of the rare re-run); such a grant can come again and again, from any peer, so the
    /// work machine bounds what waits for a slot (`WorkSettings.maxGrantedQueue`).
    private mutating func onAnswer(
        from: PeerID, requestID rid: UInt64, granted: [StealableTask], now: Instant, into out: inout [StealDirective]
    ) {
        guard rid < nextRequestID else { return }  // never sent
        let state: RequestState?
        if let r = sent[rid] {
            guard r.victim == from else { return }
            state = r.state
        } else {
            state = nil
        }
        switch state {
        case .settled: return
        case .pending:
            sent[rid]?.state = .settled
            pending.removeAll { $0 == rid }
            pendingMessages[rid] = nil
            if granted.isEmpty {
                counters.refusals += 1
                if regularVictim == from { regularVictim = nil }
                fail(now: now, into: &out)
            } else {
                failures = 0
                backoffUntil = Instant(nanoseconds: .min)
                regularVictim = from
                grant(granted, into: &out)
            }
        case .expired, nil:
            sent[rid]?.state = .settled
            if !granted.isEmpty {
                counters.lateGrants += 1
                grant(granted, into: &out)
            }
        }
    }

    private mutating func grant(_ tasks: [StealableTask], into out: inout [StealDirective]) {
        counters.stealsGranted += 1
        counters.tasksStolen += tasks.count
        out.append(.run(tasks))
    }

    private mutating func onTimeout(requestID rid: UInt64, now: Instant, into out: inout [StealDirective]) {
        guard let request = sent[rid], request.state == .pending else { return }  // answered: stale timer
        if request.attempts <= settings.requestRetransmits, let message = pendingMessages[rid] {
            // Same request id: the victim answers it idempotently, so a lost request or reply
            // is recovered without the victim giving anything twice.
            sent[rid]?.attempts += 1
            counters.retransmits += 1
            out.append(.send(message, to: request.victim))
            timeout(rid, attempt: request.attempts + 1, now: now, into: &out)
            return
        }
        sent[rid]?.state = .expired
        pendingMessages[rid] = nil
        pending.removeAll { $0 == rid }
        if regularVictim == request.victim { regularVictim = nil }
        counters.timeouts += 1
        fail(now: now, into: &out)
    }

    private func backoff(failures: Int) -> Interval {
        var d = settings.retryBackoff
        var i = 1
        while i < failures && d < settings.maxBackoff {
            d = d * 2
            i += 1
        }
        return min(d, settings.maxBackoff)
    }

    private mutating func fail(now: Instant, into out: inout [StealDirective]) {
        failures = min(failures + 1, 64)
        let d = backoff(failures: failures)
        backoffUntil = now + d
        out.append(.schedule(.retry, after: d))
    }

    // MARK: Victim

    private mutating func onRequest(
        from thief: PeerID, requestID rid: UInt64, max asked: Int, catalogue cat: [UInt64], holding held: [VersionRef],
        now: Instant, into out: inout [StealDirective]
    ) {
        guard thief != id else { return }
        let key = GrantKey(thief: thief, requestID: rid)
        if let previous = grants[key] {
            counters.duplicateRequests += 1
            out.append(.send(answer(rid, previous), to: thief))
            return
        }
        if self.held.contains(where: { $0.key == key }) {
            counters.duplicateRequests += 1  // answered when it is served or its time is up
            return
        }
        let chosen = choose(for: thief, asked: asked, catalogue: cat, holding: held)
        if chosen.isEmpty, asked > 0, settings.holdRequestsFor > .zero, self.held.count < settings.maxHeldRequests {
            // One held request per thief: a newer one replaces an older (the thief gave it up).
            if let old = self.held.firstIndex(where: { $0.key.thief == thief }) {
                settle(self.held.remove(at: old).key, [], into: &out)
            }
            let until = now + settings.holdRequestsFor
            self.held.append(HeldRequest(key: key, max: asked, catalogue: cat, holding: held, until: until))
            counters.requestsHeld += 1
            if heldSweepAt == nil {
                heldSweepAt = until
                out.append(.schedule(.heldSweep, after: settings.holdRequestsFor))
            }
            return
        }
        settle(key, chosen, into: &out)
    }

    /// Tells up to `offerFanout` of `candidates` (sampled with the seeded generator from their
    /// sorted list) that this peer has ready tasks to spare, at most once per `offerInterval`.
    private mutating func offerWork(to candidates: [PeerID], now: Instant, into out: inout [StealDirective]) {
        guard settings.offerFanout > 0, now >= nextOfferAt, readyTasks > tasksKept else { return }
        var peers = candidates.filter { $0 != id }.sorted()
        guard !peers.isEmpty else { return }
        nextOfferAt = now + settings.offerInterval
        let k = drawToFront(&peers, settings.offerFanout)
        for p in peers[0..<k] {
            out.append(.send(.offer(readyTasks: readyTasks - tasksKept, catalogue: catalogueSummary), to: p))
            counters.offersSent += 1
        }
    }

    /// Answers request `key` with `chosen` (empty: refused) and remembers the answer.
    private mutating func settle(_ key: GrantKey, _ chosen: [StealableTask], into out: inout [StealDirective]) {
        rememberGrant(key, chosen)
        if chosen.isEmpty {
            counters.refusalsSent += 1
        } else {
            counters.tasksGiven += chosen.count
            out.append(.give(chosen.map(\.id), to: key.thief))
        }
        out.append(.send(answer(key.requestID, chosen), to: key.thief))
    }

    private mutating func serveHeld(_ thief: PeerID, into out: inout [StealDirective]) {
        guard let i = held.firstIndex(where: { $0.key.thief == thief }) else { return }
        let h = held[i]
        let chosen = choose(for: thief, asked: h.max, catalogue: h.catalogue, holding: h.holding)
        guard !chosen.isEmpty else { return }
        held.remove(at: i)
        counters.heldRequestsServed += 1
        settle(h.key, chosen, into: &out)
    }

    /// Refuses the held requests whose time is up; the timer comes again for the next one.
    private mutating func sweepHeld(now: Instant, into out: inout [StealDirective]) {
        guard let at = heldSweepAt, now >= at else { return }  // an earlier timer, stale
        heldSweepAt = nil
        var kept: [HeldRequest] = []
        for h in held {
            if h.until <= now { settle(h.key, [], into: &out) } else { kept.append(h) }
        }
        held = kept
        if let next = held.first?.until {
            heldSweepAt = next
            out.append(.schedule(.heldSweep, after: next - now))
        }
    }

    /// The tasks a request may take from the queue now (removed from it): at most `asked` and
    /// `stealBatchMax`, leaving `tasksKept`, only those the thief's catalogue runs, those whose
    /// inputs it holds (most held bytes) first, then in queue order.
    private mutating func choose(
        for thief: PeerID, asked: Int, catalogue cat: [UInt64], holding held: [VersionRef]
    ) -> [StealableTask] {
        let room = min(asked, settings.stealBatchMax, queue.count - tasksKept)
        guard room > 0 else { return [] }
        // A victim answers a request for every protocol period of every idle thief: no hashing
        // of the catalogue (sorted, as a request's is: binary search; one that is not, from
        // another implementation, is sorted here first) and one pass to split the queue.
        var runnable = cat.prefix(settings.maxCatalogueAdvertised)
        if !Self.isAscending(runnable) { runnable = ArraySlice(runnable.sorted()) }
        let heldSet = Set(held.prefix(settings.maxHoldingAdvertised))
        var scored: [(held: UInt64, index: Int)] = []
        scored.reserveCapacity(queue.count)
        for (i, t) in queue.enumerated() where Self.sortedContains(runnable, t.catalogueKey) {
            let bytes = t.inputs.reduce(UInt64(0)) { sum, input in
                heldSet.contains(input.datum) || input.holder == thief ? sum &+ input.bytes : sum
            }
            scored.append((bytes, i))
        }
        scored.sort { $0.held != $1.held ? $0.held > $1.held : $0.index < $1.index }
        var picked = [Bool](repeating: false, count: queue.count)
        for s in scored.prefix(room) { picked[s.index] = true }
        var chosen: [StealableTask] = []
        chosen.reserveCapacity(min(room, scored.count))
        var kept: [StealableTask] = []
        kept.reserveCapacity(queue.count - min(room, scored.count))
        for (i, t) in queue.enumerated() {
            if picked[i] { chosen.append(t) } else { kept.append(t) }
        }
        queue = kept
        return chosen
    }

    private static func isAscending(_ keys: ArraySlice<UInt64>) -> Bool {
        zip(keys, keys.dropFirst()).allSatisfy { $0 <= $1 }
    }

    /// Whether the ascending `keys` hold `key`.
    private static func sortedContains(_ keys: ArraySlice<UInt64>, _ key: UInt64) -> Bool {
        var low = keys.startIndex
        var high = keys.endIndex
        while low < high {
            let mid = low + (high - low) / 2
            if keys[mid] < key { low = mid + 1 } else { high = mid }
        }
        return low < keys.endIndex && keys[low] == key
    }

    private func answer(_ rid: UInt64, _ tasks: [StealableTask]) -> StealMessage {
        tasks.isEmpty ? .refused(requestID: rid) : .reply(requestID: rid, granted: tasks)
    }

    private mutating func rememberGrant(_ key: GrantKey, _ tasks: [StealableTask]) {
        grants[key] = tasks
        if grantOrder.count < settings.grantMemory {
            grantOrder.append(key)
        } else {
            grants[grantOrder[grantOldest]] = nil
            grantOrder[grantOldest] = key
            grantOldest = (grantOldest + 1) % grantOrder.count
        }
    }
}
