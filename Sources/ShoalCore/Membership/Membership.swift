/// The SWIM membership machine of one peer: failure detection by direct and indirect probes,
/// suspicion with incarnation-number refutation, and infection-style dissemination of updates
/// piggybacked on the probe messages.
///
/// Pure: it reads no clock (time comes in as `now`), draws every random choice from a
/// `SeededGenerator`, does no IO and iterates no unordered collection where the order matters.
/// Timers leave as `.schedule` directives and come back as `.timer` events; stale timers are
/// ignored, so the shell never needs to cancel one.
public struct Membership: Sendable {
    public let id: PeerID
    public let settings: MembershipSettings
    public private(set) var counters = MembershipCounters()

    /// No peer's id: the work machine's "nobody" (`OwnedWorkflow.nobody`). Updates about it are
    /// ignored, and messages from it or naming it as a target are dropped.
    static let reserved = PeerID(raw: .max)

    private var rng: SeededGenerator
    private var table = MemberTable()
    /// Members alive or suspect, self included: kept up to date by `store`.
    private var activeCount = 0
    private var started = false
    private var hasLeft = false

    // Joining.
    private var seeds: [PeerID] = []
    private var joined = false
    private var joinAttempts = 0

    // Probing: rounds over the table's slots in a seeded pseudo-random order computed on the fly,
    // so no per-member list is kept (see `ProbeRound`). This peer is always slot 0.
    private var probeRound = ProbeRound()
    /// Slots of the members other than self that are dead, kept by `store` (unordered; only dead
    /// members cost an entry).
    private var deadSlots: [Int32] = []
    private var nextSequence: UInt64 = 1
    private var periods = 0
    /// The protocol period of the last pull from a revived member, or -1.
    private var lastRevivalPull = -1
    private enum ProbePhase { case direct, indirect }
    private struct Probe { var target: PeerID; var phase: ProbePhase }
    /// Our own probes still waiting for an ack, by sequence (one or two at a time: a small list
    /// searched linearly beats hashing).
    private var probes = SmallMap<Probe>()
    /// Pings we sent on someone's behalf: our sequence -> (requester, their sequence).
    private struct Relay { var requester: PeerID; var sequence: UInt64; var target: PeerID }
    private var relays = SmallMap<Relay>()

    // Dissemination: the gossip queue lives in `table` (slots in lanes by times sent; the update
    // sent is the member's current state).

    public init(id: PeerID, settings: MembershipSettings = MembershipSettings(), seed: UInt64) {
        self.id = id
        self.settings = settings
        self.rng = SeededGenerator(seed: seed ^ (id.raw &* 0x9E37_79B9_7F4A_7C15))
        _ = store(MemberInfo(peer: id, status: .alive, incarnation: 0), at: nil)
    }

    // MARK: Queries

    public func member(_ peer: PeerID) -> MemberInfo? { table[peer] }

    /// All known members sorted by peer, this peer included. Sorts on each call: O(n log n); see
    /// `forEachMember` for a pass without sorting or allocating.
    public var members: [MemberInfo] {
        var list = (0..<table.count).map { table.info(at: $0) }
        list.sort { $0.peer < $1.peer }
        return list
    }

    /// Calls `body` with every known member, this peer first, then in the order this peer learned
    /// of them (deterministic, not sorted). O(n), allocates nothing.
    public func forEachMember(_ body: (MemberInfo) throws -> Void) rethrows {
        for s in 0..<table.count { try body(table.info(at: s)) }
    }

    /// How many members are known (this peer included), and the one in slot `slot` of
    /// `forEachMember`'s order (0 ..< memberCount): a walk over part of the view from any point.
    public var memberCount: Int { table.count }
    public func member(atSlot slot: Int) -> MemberInfo { table.info(at: slot) }

    /// Changes whenever a member's status or load changes: a shell that derives something from
    /// the whole view (steal candidates) recomputes it only when this moved.
    public private(set) var viewEpoch: UInt64 = 0
    private var loadedSlots: [Int32] = []

    /// How many members (this peer included) last reported ready tasks.
    public var membersWithReadyTasks: Int { loadedSlots.count }

    /// Calls `body` with every member whose last load report has ready tasks (whatever its
    /// status), in the order they started to report some: the possible victims of a steal.
    public func forEachMemberWithReadyTasks(_ body: (MemberInfo) throws -> Void) rethrows {
        for s in loadedSlots { try body(table.info(at: Int(s))) }
    }

    /// Members alive or suspect, this peer included (unless it left).
    public var aliveCount: Int { activeCount }

    /// This peer's own incarnation number.
    public var incarnation: UInt64 { UInt64(table.records[0].incarnation) }

    /// Whether a seed has answered our join (or we formed the cluster ourselves).
    public var isJoined: Bool { joined }

    /// Number of updates waiting in the dissemination buffer.
    public var pendingGossipCount: Int { table.queuedCount }

    /// Most times one update is piggybacked with the current cluster size.
    public var retransmitLimit: Int {
        let n = max(1, aliveCount)
        let log2Ceil = Int.bitWidth - n.leadingZeroBitCount  // ceil(log2(n + 1))
        return max(1, settings.retransmitMultiplier * log2Ceil)
    }

    /// The heap bytes this machine's own storage holds, computed from the capacity of each array,
    /// set and dictionary times its element stride (hash tables at their bucket count). Excludes
    /// allocator overhead and message arrays it has handed out. For benchmarks.
    public var estimatedHeapBytes: Int {
        table.estimatedHeapBytes + HeapSize.array(seeds) + HeapSize.array(deadSlots) + HeapSize.array(loadedSlots)
            + probes.estimatedHeapBytes + relays.estimatedHeapBytes
    }

    // MARK: Events

    public mutating func on(_ event: MembershipEvent, now: Instant, into out: inout [MembershipDirective]) {
        switch event {
        case .start(let seeds): onStart(seeds: seeds, into: &out)
        case .message(let message, let from): onMessage(message, from: from, into: &out)
        case .timer(let timer): onTimer(timer, into: &out)
        case .leave: onLeave(into: &out)
        case .setLoad(let load): onSetLoad(load)
        }
    }

    /// Convenience for tests and shells that prefer a returned array.
    public mutating func on(_ event: MembershipEvent, now: Instant) -> [MembershipDirective] {
        var out: [MembershipDirective] = []
        on(event, now: now, into: &out)
        return out
    }

    private mutating func onStart(seeds: [PeerID], into out: inout [MembershipDirective]) {
        guard !started, !hasLeft else { return }
        started = true
        out.append(.statusChanged(id, .alive))
        var unique: [PeerID] = []
        for s in seeds where s != id && !unique.contains(s) { unique.append(s) }
        self.seeds = unique
        if unique.isEmpty {
            joined = true
        } else {
            sendJoin(into: &out)
        }
        out.append(.schedule(.protocolPeriod, after: settings.protocolPeriod))
    }

    private mutating func sendJoin(into out: inout [MembershipDirective]) {
        let fanout = min(max(1, settings.joinFanout), seeds.count)
        let start = (joinAttempts * fanout) % seeds.count
        joinAttempts += 1
        let me = table[id]!.update
        for j in 0..<fanout {
            out.append(.send(.join(updates: [me]), to: seeds[(start + j) % seeds.count]))
        }
        out.append(.schedule(.joinRetry, after: settings.joinRetryInterval))
    }

    /// A load version at `MemberTable.counterLimit` is the last: further loads are not reported
    /// (about 4 billion `setLoad`s; a shell reports its load a few times per protocol period).
    private mutating func onSetLoad(_ load: PeerLoad) {
        guard var me = table[id], me.load != load, me.status == .alive,
            me.loadVersion < MemberTable.counterLimit
        else { return }
        me.load = load
        me.loadVersion &+= 1
        _ = store(me, at: 0)
        if started && !hasLeft { enqueue(slot: 0) }
    }

    private mutating func onLeave(into out: inout [MembershipDirective]) {
        guard started, !hasLeft else { return }
        hasLeft = true
        var me = table[id]!
        me.status = .left
        _ = store(me, at: 0)
        out.append(.statusChanged(id, .left))
        let targets = chooseActive(settings.leaveFanout, excluding: [])
        for t in targets {
            out.append(.send(.ping(sequence: takeSequence(), updates: [me.update]), to: t))
        }
        probes.removeAll()
        relays.removeAll()
        table.unqueueAll()
    }

    // MARK: Messages

    /// Most updates a gossip message (ping, ack, ping request, join, sync) may carry: a sender
    /// piggybacks at most `maxPiggyback`; the floor of 64 leaves room for peers whose setting is
    /// larger than ours.
    private var maxGossipUpdates: Int { max(settings.maxPiggyback, 64) }
    private var maxMembers: Int { max(1, settings.maxMembers) }

    /// Whether a message from another peer is within bounds. One that is not is dropped and
    /// counted (`MembershipCounters.messagesDropped`), never trapped on: its sender may be buggy,
    /// or hostile. O(1): it looks at list lengths only. The updates themselves are checked one by
    /// one where they are merged (`merge`), and the table's growth is bounded there (`maxMembers`).
    private func acceptable(_ message: MembershipMessage, from: PeerID) -> Bool {
        guard from != Self.reserved else { return false }
        switch message {
        case .ping(_, let updates), .ack(_, let updates), .join(let updates):
            return updates.count <= maxGossipUpdates
        case .pingRequest(_, let target, let updates):
            return target != Self.reserved && updates.count <= maxGossipUpdates
        case .sync(let digest, let updates):
            let n = digest.count
            return updates.count <= maxGossipUpdates && n >= 1 && n <= MemberTable.digestBuckets && n & (n - 1) == 0
        case .joinReply(let members), .syncReply(let members):
            return members.count <= maxMembers
        }
    }

    private mutating func onMessage(_ message: MembershipMessage, from: PeerID, into out: inout [MembershipDirective]) {
        guard started, from != id else { return }
        guard acceptable(message, from: from) else {
            counters.messagesDropped += 1
            return
        }
        if hasLeft {
            // Answer pings with our `left` so late probers learn it; otherwise stay silent.
            if case .ping(let seq, _) = message {
                out.append(.send(.ack(sequence: seq, updates: [table[id]!.update]), to: from))
            }
            return
        }
        let isReply: Bool
        switch message {
        case .joinReply, .syncReply: isReply = true
        default: isReply = false
        }
        let senderSlot = table.slot(of: from)
        let senderWasDown = senderSlot.map { !table.records[$0].status.isActive } ?? false
        for u in message.updates { merge(u, gossip: !isReply, into: &out) }
        if senderSlot == nil { noteSender(from, into: &out) }
        if senderWasDown, let s = table.slot(of: from), table.records[s].status.isActive {
            pullFromRevived(from, into: &out)
        }

        switch message {
        case .ping(let seq, _):
            out.append(.send(.ack(sequence: seq, updates: piggyback(for: from)), to: from))
        case .ack(let seq, _):
            if probes.remove(seq) != nil { return }
            if let relay = relays.remove(seq), relay.target == from {
                out.append(
                    .send(.ack(sequence: relay.sequence, updates: piggyback(for: relay.requester)), to: relay.requester)
                )
            }
        case .pingRequest(let seq, let target, _):
            guard target != id else {
                out.append(.send(.ack(sequence: seq, updates: piggyback(for: from)), to: from))
                return
            }
            guard relays.count < max(0, settings.maxPendingRelays) else { return }
            let mine = takeSequence()
            relays[mine] = Relay(requester: from, sequence: seq, target: target)
            out.append(.send(.ping(sequence: mine, updates: piggyback(for: target)), to: target))
            out.append(.schedule(.pingTimeout(sequence: mine), after: settings.indirectPingTimeout))
        case .join:
            out.append(.send(.joinReply(members: syncList()), to: from))
        case .joinReply:
            joined = true
        case .sync(let digest, _):
            let limit = max(1, settings.maxSyncMembers)
            let start = table.count > limit ? Int(rng.next() % UInt64(table.count)) : 0
            let differing = table.members(differingFrom: digest, limit: limit, start: start) ?? []
            if !differing.isEmpty { out.append(.send(.syncReply(members: differing), to: from)) }
        case .syncReply:
            joined = true
        }
    }

    /// A member we believed dead (or gone) has just refuted that itself: after a partition heals or
    /// a restart, it is the first contact with peers whose news we missed, so pull its view now
    /// rather than at the next anti-entropy round (at most one such pull a protocol period).
    private mutating func pullFromRevived(_ peer: PeerID, into out: inout [MembershipDirective]) {
        guard settings.syncEveryPeriods > 0, lastRevivalPull != periods else { return }
        lastRevivalPull = periods
        let digest = table.digest(buckets: digestBuckets)
        out.append(.send(.sync(digest: digest, updates: [table.info(at: 0)]), to: peer))
    }

    /// A message from a peer we do not know adds it as alive (incarnation 0).
    private mutating func noteSender(_ peer: PeerID, into out: inout [MembershipDirective]) {
        guard table.slot(of: peer) == nil else { return }
        merge(MemberUpdate(peer: peer, status: .alive, incarnation: 0), gossip: true, into: &out)
    }

    /// This peer's view for a joiner: itself first, then the others in slot order, at most
    /// `maxSyncMembers` in all. When the bound cuts the view, the others start at a random slot, so
    /// that joiners (and a joiner's retries) hear of different members.
    private mutating func syncList() -> [MemberUpdate] {
        let n = min(table.count, max(1, settings.maxSyncMembers))
        var list: [MemberUpdate] = []
        list.reserveCapacity(n)
        list.append(table.info(at: 0))
        let others = table.count - 1
        guard others > 0 else { return list }
        let start = n < table.count ? Int(rng.next() % UInt64(others)) : 0
        for i in 0..<(n - 1) { list.append(table.info(at: 1 + (start + i) % others)) }
        return list
    }

    // MARK: Timers

    private mutating func onTimer(_ timer: MembershipTimer, into out: inout [MembershipDirective]) {
        guard started, !hasLeft else { return }
        switch timer {
        case .protocolPeriod:
            out.append(.schedule(.protocolPeriod, after: settings.protocolPeriod))
            periods += 1
            if settings.syncEveryPeriods > 0, periods % settings.syncEveryPeriods == 0,
                let peer = chooseActive(1, excluding: []).first
            {
                let digest = table.digest(buckets: digestBuckets)
                out.append(.send(.sync(digest: digest, updates: [table.info(at: 0)]), to: peer))
            }
            if settings.deadProbePeriods > 0, periods % settings.deadProbePeriods == 0,
                !deadSlots.isEmpty
            {
                let dead = table.peer(at: Int(deadSlots[Int(rng.next() % UInt64(deadSlots.count))]))
                // Not a probe: nothing is tracked. Its ack, if it comes, carries the refutation.
                out.append(.send(.ping(sequence: takeSequence(), updates: piggyback(for: dead)), to: dead))
            }
            guard let target = nextProbeTarget() else { return }
            let seq = takeSequence()
            probes[seq] = Probe(target: target, phase: .direct)
            out.append(.send(.ping(sequence: seq, updates: piggyback(for: target)), to: target))
            out.append(.schedule(.pingTimeout(sequence: seq), after: settings.pingTimeout))
        case .pingTimeout(let seq):
            if relays.remove(seq) != nil { return }
            guard var probe = probes[seq], probe.phase == .direct else { return }
            probe.phase = .indirect
            probes[seq] = probe
            let helpers = chooseActive(settings.indirectPingCount, excluding: [probe.target])
            for h in helpers {
                out.append(.send(.pingRequest(sequence: seq, target: probe.target, updates: piggyback(for: h)), to: h))
            }
            out.append(.schedule(.indirectTimeout(sequence: seq), after: settings.indirectPingTimeout))
        case .indirectTimeout(let seq):
            guard let probe = probes[seq], probe.phase == .indirect else { return }
            probes[seq] = nil
            if let info = table[probe.target], info.status == .alive {
                var u = info.update
                u.status = .suspect
                merge(u, gossip: true, into: &out)
            }
        case .suspicion(let peer, let inc):
            if let info = table[peer], info.status == .suspect, info.incarnation == inc {
                var u = info.update
                u.status = .dead
                merge(u, gossip: true, into: &out)
            }
        case .joinRetry:
            guard !joined, !seeds.isEmpty, joinAttempts < max(1, settings.maxJoinAttempts) else { return }
            sendJoin(into: &out)
        }
    }

    // MARK: Probe order

    /// One probe round: every slot of `[0, 2^bits)` once, in the order of a seeded bijection of that
    /// range (odd multiplications, an addition and xor-shifts, each invertible modulo 2^bits), slots
    /// beyond the table and members not active skipped. A round spans the table as it was when the
    /// round began; a member learned during a round is probed in it if its slot is in range and its
    /// turn has not passed, otherwise in the next one.
    private struct ProbeRound {
        var bits = 0
        var next = 1
        var end = 1
        var a: UInt64 = 1
        var b: UInt64 = 0
        var c: UInt64 = 1

        func slot(_ i: Int) -> Int {
            let mask = UInt64(end - 1)
            let half = UInt64(max(1, (bits + 1) / 2))
            var x = (UInt64(i) &* a &+ b) & mask
            x ^= x >> half
            x = (x &* c) & mask
            x ^= x >> half
            return Int(x)
        }
    }

    /// The next member to probe: round-robin over a seeded pseudo-random order of the active
    /// members, a new order each round.
    private mutating func nextProbeTarget() -> PeerID? {
        for _ in 0..<2 {
            while probeRound.next < probeRound.end {
                let s = probeRound.slot(probeRound.next)
                probeRound.next += 1
                if s != 0, s < table.count, table.records[s].status.isActive { return table.peer(at: s) }
            }
            guard activeOthers > 0 else { return nil }
            let bits = Int.bitWidth - (table.count - 1).leadingZeroBitCount
            probeRound = ProbeRound(
                bits: bits, next: 0, end: 1 << bits, a: rng.next() | 1, b: rng.next(), c: rng.next() | 1)
        }
        return nil
    }

    /// Buckets of the anti-entropy digest this peer sends: about 8 members a bucket, 1 to 64.
    private var digestBuckets: Int {
        let wanted = (table.count + 7) / 8
        return min(MemberTable.digestBuckets, wanted <= 1 ? 1 : 1 << (Int.bitWidth - (wanted - 1).leadingZeroBitCount))
    }

    /// Active members other than this peer.
    private var activeOthers: Int { activeCount - (table.records[0].status.isActive ? 1 : 0) }

    // MARK: Merging (SWIM precedence)

    /// Whether `new` should replace `old` about the same member.
    public static func overrides(_ new: MemberUpdate, _ old: MemberInfo) -> Bool {
        switch (old.status, new.status) {
        // A peer declared dead (or that left) comes back only at a higher incarnation: the one
        // it takes when it refutes the report, after a partition heals or when it restarts.
        case (.dead, .alive), (.dead, .suspect), (.left, .alive), (.left, .suspect):
            return new.incarnation > old.incarnation
        case (.left, _): return false
        case (.dead, .left): return new.incarnation >= old.incarnation
        case (.dead, .dead): return false
        // A death or a leave is about one incarnation: a stale one never buries a revived peer.
        case (_, .left), (_, .dead): return new.incarnation >= old.incarnation
        case (.alive, .alive): return new.incarnation > old.incarnation
        case (.suspect, .alive): return new.incarnation > old.incarnation
        case (.alive, .suspect): return new.incarnation >= old.incarnation
        case (.suspect, .suspect): return new.incarnation > old.incarnation
        }
    }

    /// Merges one update: status and incarnation by SWIM precedence, load by `loadVersion`.
    /// Returns nothing; emits `statusChanged` and schedules suspicion; re-gossips what changed.
    /// An update whose incarnation or load version is above `MemberTable.counterLimit` (2^32 - 2;
    /// no peer refutes or reports its load 4 billion times) is ignored as malformed: the table keeps
    /// them in 32 bits.
    /// An update about the reserved id is ignored too, and a new member beyond `maxMembers` is
    /// refused; each is counted.
    private mutating func merge(_ u: MemberUpdate, gossip shouldGossip: Bool, into out: inout [MembershipDirective]) {
        let limit = MemberTable.counterLimit
        guard u.incarnation <= limit, u.loadVersion <= limit, u.peer != Self.reserved else {
            counters.updatesIgnored += 1
            return
        }
        if u.peer == id {
            mergeAboutSelf(u)
            return
        }
        guard let slot = table.slot(of: u.peer) else {
            guard table.count < maxMembers else {
                counters.membersRefused += 1
                return
            }
            let info = MemberInfo(
                peer: u.peer, status: u.status, incarnation: u.incarnation, load: u.load, loadVersion: u.loadVersion)
            let slot = store(info, at: nil)
            out.append(.statusChanged(u.peer, u.status))
            if u.status == .suspect {
                out.append(.schedule(.suspicion(u.peer, incarnation: u.incarnation), after: settings.suspicionTimeout))
            }
            if shouldGossip { enqueue(slot: slot) }
            return
        }
        let old = table.info(at: slot)
        var info = old
        let statusWins = Self.overrides(u, old)
        if statusWins {
            info.status = u.status
            info.incarnation = u.incarnation
        }
        let loadWins = u.loadVersion > old.loadVersion && info.status.isActive
        if loadWins {
            info.load = u.load
            info.loadVersion = u.loadVersion
        }
        guard statusWins || loadWins else { return }
        _ = store(info, at: slot)
        if old.status != info.status { out.append(.statusChanged(u.peer, info.status)) }
        if info.status == .suspect && (old.status != .suspect || old.incarnation != info.incarnation) {
            out.append(.schedule(.suspicion(u.peer, incarnation: info.incarnation), after: settings.suspicionTimeout))
        }
        if shouldGossip { enqueue(slot: slot) }
    }

    /// Updates about ourselves. Suspected or declared dead at our incarnation or later: bump it
    /// and gossip alive (refutation). A report from a previous life of this peer (higher
    /// incarnation or load version than ours) is overtaken so our own reports win again.
    private mutating func mergeAboutSelf(_ u: MemberUpdate) {
        var me = table.info(at: 0)
        guard me.status == .alive else { return }
        var changed = false
        if u.status != .alive {
            // Refute: a report at our incarnation or later needs a higher one. A report at an older
            // incarnation is stale, but its sender has not heard our newer one (it may have retired
            // from gossip long ago, say while a partition kept us apart): announce it again.
            if u.incarnation >= me.incarnation {
                guard u.incarnation < MemberTable.counterLimit else { return }  // no higher one to take
                me.incarnation = u.incarnation + 1
            }
            changed = true
        } else if u.incarnation > me.incarnation {
            me.incarnation = u.incarnation
        }
        if u.loadVersion < MemberTable.counterLimit
            && (u.loadVersion > me.loadVersion || (u.loadVersion == me.loadVersion && u.load != me.load))
        {
            me.loadVersion = u.loadVersion &+ 1
            changed = true
        }
        _ = store(me, at: 0)
        if changed { enqueue(slot: 0) }
    }

    /// Stores `info` in `slot` (which must be `table.slot(of: info.peer)`; this peer is slot 0)
    /// and keeps the active count and the dead list; returns the slot.
    private mutating func store(_ info: MemberInfo, at slot: Int?) -> Int {
        let oldInfo = slot.map { table.info(at: $0) }
        let oldStatus = oldInfo?.status
        if let oldStatus, oldStatus.isActive { activeCount -= 1 }
        if info.status.isActive { activeCount += 1 }
        let s = table.store(info, at: slot)
        if oldInfo?.load != info.load || oldInfo?.status != info.status { viewEpoch &+= 1 }
        // The slots of members reporting ready tasks, in the order they started to (few: the
        // peers with work to give), so a thief looks at those and not at the whole table.
        let wasLoaded = (oldInfo?.load.readyTasks ?? 0) > 0
        if wasLoaded != (info.load.readyTasks > 0) {
            if info.load.readyTasks > 0 {
                loadedSlots.append(Int32(s))
            } else if let i = loadedSlots.firstIndex(of: Int32(s)) {
                loadedSlots.remove(at: i)
            }
        }
        guard s != 0 else { return s }
        let wasDead = oldStatus == .dead
        if wasDead != (info.status == .dead) {
            if info.status == .dead {
                deadSlots.append(Int32(s))
            } else if let i = deadSlots.firstIndex(of: Int32(s)) {
                deadSlots.swapAt(i, deadSlots.count - 1)
                deadSlots.removeLast()
            }
        }
        return s
    }

    // MARK: Dissemination

    private mutating func enqueue(slot: Int) {
        table.queue(slot)
        let bound = max(1, settings.maxGossipUpdates)
        while table.queuedCount > bound { table.dropMostSent() }
    }

    /// The least-sent updates (the longest-waiting first at equal counts), at most `maxPiggyback`;
    /// each is retired after `retransmitLimit` sends. A recipient we suspect (or believe dead)
    /// always hears of it first, so it can refute without waiting for gossip.
    private mutating func piggyback(for recipient: PeerID) -> [MemberUpdate] {
        var result: [MemberUpdate] = []
        guard settings.maxPiggyback > 0 else { return [] }
        let recipientSlot = table.slot(of: recipient)
        var skip: Int? = nil
        if let r = recipientSlot, table.records[r].status == .suspect || table.records[r].status == .dead {
            result.append(table.info(at: r))
            skip = r
        }
        guard table.queuedCount > 0, result.count < settings.maxPiggyback else { return result }
        let k = settings.maxPiggyback - result.count
        result.reserveCapacity(result.count + min(k, table.queuedCount))
        table.takeGossip(k, limit: retransmitLimit, skip: skip, into: &result)
        return result
    }

    // MARK: Helpers

    private mutating func takeSequence() -> UInt64 {
        defer { nextSequence &+= 1 }
        return nextSequence
    }

    /// Up to `k` distinct active members other than self and `excluding`, chosen with the seeded
    /// generator: by rejection sampling over the table's slots when active members are many and
    /// most of the table (O(k), no copy), else from a list of the eligible ones (O(n)).
    private mutating func chooseActive(_ k: Int, excluding: [PeerID]) -> [PeerID] {
        let n = activeOthers
        let slots = table.count
        guard k > 0, n > 0 else { return [] }
        if n <= 4 * (k + excluding.count) || n * 2 < slots {
            var eligible: [PeerID] = []
            eligible.reserveCapacity(n)
            for s in 1..<slots where table.records[s].status.isActive {
                let p = table.peer(at: s)
                if !excluding.contains(p) { eligible.append(p) }
            }
            return choose(k, from: eligible)
        }
        var picked: [PeerID] = []
        picked.reserveCapacity(k)
        while picked.count < k {
            let s = 1 + Int(rng.next() % UInt64(slots - 1))
            guard table.records[s].status.isActive else { continue }
            let p = table.peer(at: s)
            if !excluding.contains(p), !picked.contains(p) { picked.append(p) }
        }
        return picked
    }

    /// Up to `k` distinct members of `candidates`, chosen with the seeded generator.
    private mutating func choose(_ k: Int, from candidates: [PeerID]) -> [PeerID] {
        var c = candidates
        let n = min(max(0, k), c.count)
        for i in 0..<n {
            let j = i + Int(rng.next() % UInt64(c.count - i))
            c.swapAt(i, j)
        }
        return Array(c.prefix(n))
    }
}

/// A few values by 64-bit key in a list searched linearly: the machine's outstanding probes and
/// relays, a handful at a time, where hashing cost more than the search.
struct SmallMap<Value: Sendable>: Sendable {
    private var keys: [UInt64] = []
    private var values: [Value] = []

    var count: Int { keys.count }

    subscript(key: UInt64) -> Value? {
        get { keys.firstIndex(of: key).map { values[$0] } }
        set {
            if let i = keys.firstIndex(of: key) {
                if let newValue {
                    values[i] = newValue
                } else {
                    _ = remove(at: i)
                }
            } else if let newValue {
                keys.append(key)
                values.append(newValue)
            }
        }
    }

    /// Removes and returns the value under `key`.
    mutating func remove(_ key: UInt64) -> Value? {
        keys.firstIndex(of: key).map { remove(at: $0) }
    }

    private mutating func remove(at i: Int) -> Value {
        keys.swapAt(i, keys.count - 1)
        values.swapAt(i, values.count - 1)
        keys.removeLast()
        return values.removeLast()
    }

    mutating func removeAll() {
        keys.removeAll()
        values.removeAll()
    }

    var estimatedHeapBytes: Int { HeapSize.array(keys) + HeapSize.array(values) }
}
