/// Everything one peer says to another.
public enum PeerMessage: Sendable {
    case membership(MembershipMessage)
    case steal(StealMessage)
    case work(WorkMessage)
    case placement(PlacementMessage)

    /// Estimated encoded size, for a simulated network's bandwidth model.
    public var byteSize: Int {
        switch self {
        case .membership(let m): return m.byteSize
        case .steal(let m):
            switch m {
            case .request(_, _, let catalogue, let holding): return 32 + 8 * (catalogue.count + holding.count)
            case .reply(_, let granted):
                return 24 + granted.reduce(0) { $0 + 40 + 40 * $1.inputs.count + 8 * $1.outputs.count + ($1.call?.byteSize ?? 0) }
            case .refused, .offer: return 24
            }
        case .work(let m): return m.byteSize
        case .placement(let m):
            switch m {
            case .store(let o): return 64 + Int(clamping: o.value.bytes)
            case .fetched(_, _, let o): return 48 + Int(clamping: o?.value.bytes ?? 0)
            default: return 48
            }
        }
    }
}

public enum PeerTimer: Sendable, Hashable {
    case membership(MembershipTimer)
    case steal(StealTimer)
    case work(WorkTimer)
    case placement(PlacementTimer)
}

public enum PeerEvent: Sendable {
    case start(seeds: [PeerID])
    case message(PeerMessage, from: PeerID)
    case timer(PeerTimer)
    /// A workflow submitted at this peer (it becomes the owner).
    case submit(workflow: WorkflowID, plan: WorkflowPlan, initial: [DataValue])
    /// The program of an open workflow owned here: a batch, a wait, the close (`WorkEvent`).
    case extend(workflow: WorkflowID, calls: [WorkflowTaskSpec], initial: [DataValue])
    case wait(workflow: WorkflowID, datum: Int, requestID: UInt64)
    case barrier(workflow: WorkflowID, requestID: UInt64)
    case close(workflow: WorkflowID)
    /// The shell ran a task body.
    case executed(task: TaskRef, outputs: [DataValue])
    /// A task body failed (see `WorkEvent.failed`).
    case failed(task: TaskRef, failure: TaskFailure)
    case leave
    /// A client's put of persistent object `key` at this peer (the coordinator).
    case put(requestID: UInt64, key: UInt64, value: ObjectValue)
    case get(requestID: UInt64, key: UInt64)
    /// After a restart with its store kept: the persistent objects the shard holds.
    case recovered([StoredObject])
    /// After a restart with its store kept: the workflow records the shard holds.
    case recoveredRecords([RecoveredRecord])
}

public enum PeerDirective: Sendable {
    case send(PeerMessage, to: PeerID)
    case schedule(PeerTimer, after: Interval)
    case statusChanged(PeerID, MemberStatus)
    /// Run a task body; answer with `.executed` or `.failed` (see `WorkDirective.execute`).
    case execute(task: TaskRef, catalogueKey: UInt64, inputs: [DataValue?], attempt: Int, call: ExecutableCall?)
    case workflowCompleted(workflow: WorkflowID, results: [DataValue?], failures: [FailureReport])
    case workflowFailed(workflow: WorkflowID, reason: String, cause: FailureReport?)
    /// The answer to a program's wait (`WorkDirective.waited`).
    case waited(workflow: WorkflowID, requestID: UInt64, value: DataValue?)
    case barrierReached(workflow: WorkflowID, requestID: UInt64)
    case resultApplied(task: TaskRef)
    case taskReopened(task: TaskRef)
    case tookOver(workflow: WorkflowID, from: PeerID)
    /// Write this object to the shard durably before carrying out the directives after it.
    case persist(StoredObject)
    /// Write this change of a workflow record to the shard (laid out by `RecordCodec`).
    case persistRecord(RecordWrite)
    case putAcknowledged(requestID: UInt64, key: UInt64, version: ObjectVersion)
    case putFailed(requestID: UInt64, key: UInt64, reason: String)
    case getResult(requestID: UInt64, object: StoredObject?)
    case getFailed(requestID: UInt64, key: UInt64, reason: String)
}

public struct PeerSettings: Sendable, Hashable {
    public var membership = MembershipSettings()
    public var steal = StealSettings()
    public var work = WorkSettings()
    public var placement = PlacementSettings()
    /// The task bodies this peer can run (catalogue keys).
    public var catalogue: [UInt64] = [1]

    public init() {}
}

/// One peer's whole protocol: membership (SWIM), work stealing, the work machine (ownership,
/// execution, data) and persistent-object placement, wired together. Real peers and the simulator both drive this one machine;
/// it is pure like its parts.
///
/// The wiring: membership's status changes tell the work machine who is up and down; every
/// protocol period the peer publishes its load (free slots, ready tasks, stored bytes, catalogue
/// summary) in its gossip and, when idle, lets the stealing machine try a steal; a peer also
/// tries as soon as it runs out of work. The stealing machine's victim side sees the owner's
/// ready window just before it answers a request.
public struct PeerMachine: Sendable {
    public let id: PeerID
    public private(set) var membership: Membership
    public private(set) var steal: StealMachine
    public private(set) var work: WorkMachine
    public private(set) var placement: PlacementMachine
    /// The live view changed since the placement machine last saw it (it is told once a period).
    private var viewChanged = true
    private let catalogue: [UInt64]
    private let catalogueSummary: UInt64
    private var lastLoad = PeerLoad()
    private var candidatesEpoch = UInt64.max
    /// The ready-task count when held steal requests were last offered tasks (offered again
    /// only when it changes).
    private var heldServedAtReady = -1
    /// Draws the ids of workflows submitted here (`newWorkflowID`).
    private var workflowIDs: SeededGenerator

    /// Directive buffers are reused, but one that grew large (a join reply's thousand status
    /// changes) is given back: kept, it cost every idle peer tens of kilobytes.
    private static let keptCapacity = 64
    private var membershipOut: [MembershipDirective] = []
    private var stealOut: [StealDirective] = []
    private var workOut: [WorkDirective] = []
    private var placementOut: [PlacementDirective] = []

    public init(id: PeerID, settings: PeerSettings = PeerSettings(), seed: UInt64) {
        self.id = id
        membership = Membership(id: id, settings: settings.membership, seed: seed)
        steal = StealMachine(id: id, settings: settings.steal, seed: seed)
        work = WorkMachine(id: id, settings: settings.work)
        placement = PlacementMachine(id: id, settings: settings.placement)
        catalogue = Array(Set(settings.catalogue)).sorted()
        catalogueSummary = StealCatalogue.summary(catalogue)
        workflowIDs = SeededGenerator(seed: seed ^ 0x776F_726B_666C_6F77)
    }

    /// An id for a workflow about to be submitted here: drawn from this peer's seeded generator, so
    /// ids are unique across peers and restarts without coordination (a collision needs about 2^32
    /// workflows alive at once) and a seeded run replays them.
    public mutating func newWorkflowID() -> WorkflowID {
        WorkflowID(raw: workflowIDs.next())
    }

    public mutating func on(_ event: PeerEvent, now: Instant, into out: inout [PeerDirective]) {
        switch event {
        case .start(let seeds):
            publishLoad(now: now)  // first, so the join carries the load (one update, not two)
            onMembership(.start(seeds: seeds), now: now, into: &out)
        case .message(.membership(let m), let from): onMembership(.message(m, from: from), now: now, into: &out)
        case .message(.steal(let m), let from):
            if case .request(_, let asked, _, _) = m { updateVictim(thief: from, asked: asked, now: now) }
            onSteal(.received(m, from: from), now: now, into: &out)
            if case .offer = m { tryToSteal(now: now, into: &out) }
        case .message(.work(let m), let from): onWork(.message(m, from: from), now: now, into: &out)
        case .timer(.membership(let t)):
            onMembership(.timer(t), now: now, into: &out)
            if t == .protocolPeriod {
                publishLoad(now: now)
                // Repair needs the view only where there is something to repair; any other
                // placement event brings it up to date first.
                if placement.heldCount > 0 || placement.pendingRequests > 0 { tellPlacementTheView(now: now, into: &out) }
                tryToSteal(now: now, into: &out)
            }
        case .timer(.steal(let t)):
            if t == .retry { refreshThief(now: now) }
            onSteal(.timer(t), now: now, into: &out)
        case .timer(.work(let t)): onWork(.timer(t), now: now, into: &out)
        case .message(.placement(let m), let from):
            tellPlacementTheView(now: now, into: &out)
            onPlacement(.message(m, from: from), now: now, into: &out)
        case .timer(.placement(let t)):
            tellPlacementTheView(now: now, into: &out)
            onPlacement(.timer(t), now: now, into: &out)
        case .put(let rid, let key, let value):
            tellPlacementTheView(now: now, into: &out)
            onPlacement(.put(requestID: rid, key: key, value: value), now: now, into: &out)
        case .get(let rid, let key):
            tellPlacementTheView(now: now, into: &out)
            onPlacement(.get(requestID: rid, key: key), now: now, into: &out)
        case .recoveredRecords(let records): onWork(.recovered(records), now: now, into: &out)
        case .recovered(let objects):
            tellPlacementTheView(now: now, into: &out)
            onPlacement(.recovered(objects), now: now, into: &out)
        case .submit(let wf, let plan, let initial):
            onWork(.submit(workflow: wf, plan: plan, initial: initial), now: now, into: &out)
        case .extend(let wf, let calls, let initial):
            onWork(.extend(workflow: wf, calls: calls, initial: initial), now: now, into: &out)
        case .wait(let wf, let datum, let rid): onWork(.wait(workflow: wf, datum: datum, requestID: rid), now: now, into: &out)
        case .barrier(let wf, let rid): onWork(.barrier(workflow: wf, requestID: rid), now: now, into: &out)
        case .close(let wf): onWork(.close(workflow: wf), now: now, into: &out)
        case .executed(let task, let outputs): onWork(.executed(task: task, outputs: outputs), now: now, into: &out)
        case .failed(let task, let failure): onWork(.failed(task: task, failure: failure), now: now, into: &out)
        case .leave: onMembership(.leave, now: now, into: &out)
        }
        if !steal.heldThieves.isEmpty && work.readyTasks != heldServedAtReady { serveHeldSteals(now: now, into: &out) }
        if steal.settings.offerFanout > 0 && now >= steal.nextOfferAt && hasTasksToSpare { offerWork(now: now, into: &out) }
    }

    /// Victim: ready tasks to spare; some live peers that report none hear of them. The walk
    /// starts at a drawn member and looks at most at `offerWalk` of them (at 1,000 members a walk
    /// of all, once an interval at every busy peer, cost more than the rest); the stealing machine
    /// picks among those found and rate-limits.
    private mutating func offerWork(now: Instant, into out: inout [PeerDirective]) {
        tellStealLocalState(now: now)
        let n = membership.memberCount
        let start = steal.draw(below: n)
        let wanted = 4 * steal.settings.offerFanout
        var candidates: [PeerID] = []
        var k = 0
        while k < min(n, Self.offerWalk) && candidates.count < wanted {
            let m = membership.member(atSlot: (start + k) % n)
            if m.peer != id && m.status == .alive && m.load.readyTasks == 0 { candidates.append(m.peer) }
            k += 1
        }
        onSteal(.offerWork(candidates: candidates), now: now, into: &out)
    }

    /// Most members an offer's walk looks at.
    static let offerWalk = 256

    public mutating func on(_ event: PeerEvent, now: Instant) -> [PeerDirective] {
        var out: [PeerDirective] = []
        on(event, now: now, into: &out)
        return out
    }

    // MARK: Wiring

    private var isIdle: Bool { work.freeSlots > 0 && work.readyTasks == 0 }
    /// More ready tasks than a victim keeps (`StealMachine.tasksKept`, from the work machine's
    /// free slots as they are now): some can go to thieves.
    private var hasTasksToSpare: Bool { work.readyTasks > max(steal.settings.keepForSelf, work.freeSlots) }

    private mutating func publishLoad(now: Instant) {
        // A peer with nothing to offer (no ready task, no data) reports no load: thieves look
        // only for ready tasks, and at 1,000 members every load held costs each peer 28 KB.
        let offers = work.readyTasks > 0 || work.storedBytes > 0
        let load =
            offers
            ? PeerLoad(
                freeSlots: UInt32(clamping: work.freeSlots), readyTasks: UInt32(clamping: work.readyTasks),
                storedBytes: work.storedBytes, catalogue: catalogueSummary)
            : PeerLoad()
        guard load != lastLoad else { return }
        lastLoad = load
        membershipOut.removeAll(keepingCapacity: membershipOut.capacity <= Self.keptCapacity)
        membership.on(.setLoad(load), now: now, into: &membershipOut)
    }

    /// The stealing machine's picture of this peer (it makes no directives).
    private mutating func tellStealLocalState(now: Instant) {
        steal.on(
            .localState(freeSlots: work.freeSlots, readyTasks: work.readyTasks, catalogue: catalogue, holding: []),
            now: now, into: &stealOut)
    }

    /// The thief's picture: its own state and the gossiped loads.
    private mutating func refreshThief(now: Instant) {
        tellStealLocalState(now: now)
        // Only possible victims (members reporting ready tasks; the stealing machine filters
        // again), and only when the view moved since the last time.
        guard membership.viewEpoch != candidatesEpoch else { return }
        candidatesEpoch = membership.viewEpoch
        var candidates: [MemberInfo] = []
        let minReady = UInt32(steal.settings.minVictimReadyTasks)
        let summary = catalogueSummary
        let me = id
        membership.forEachMemberWithReadyTasks { m in
            if m.peer != me && m.status == .alive && m.load.readyTasks >= minReady && m.load.catalogue & summary != 0 {
                candidates.append(m)
            }
        }
        steal.on(.loadView(candidates), now: now, into: &stealOut)
    }

    /// The victim's picture before it answers `thief`: the tasks it may give, at most what the
    /// thief asked for plus what the victim keeps (`StealMachine.tasksKept`, told its free slots
    /// just before). A window of `stealWindow` built for every request cost more than the rest
    /// of answering it (a task's inputs and outputs are arrays); the tasks the thief holds
    /// inputs of come first.
    private mutating func updateVictim(thief: PeerID, asked: Int, now: Instant) {
        tellStealLocalState(now: now)
        let window = min(max(0, asked), work.settings.stealWindow) + steal.tasksKept
        steal.on(.readyQueue(work.stealable(near: thief, limit: window)), now: now, into: &stealOut)
    }

    /// Victim: the steal requests held for want of ready tasks get the tasks this peer can spare
    /// now, oldest first, while it has more ready than it keeps.
    private mutating func serveHeldSteals(now: Instant, into out: inout [PeerDirective]) {
        for thief in steal.heldThieves {
            guard hasTasksToSpare else { break }
            updateVictim(thief: thief, asked: steal.heldAsk(of: thief), now: now)
            onSteal(.serveHeld(thief: thief), now: now, into: &out)
        }
        heldServedAtReady = work.readyTasks
    }

    private mutating func tryToSteal(now: Instant, into out: inout [PeerDirective]) {
        // A thief asks its regular victim (the last that granted it tasks) whatever the gossiped
        // loads say; others only when some member reports ready tasks.
        guard isIdle, steal.outstandingRequests.count < steal.settings.maxOutstandingSteals,
            now >= steal.backingOffUntil, membership.membersWithReadyTasks > 0 || steal.regularVictim != nil
        else { return }
        refreshThief(now: now)
        onSteal(.tick, now: now, into: &out)
    }

    private mutating func onMembership(_ event: MembershipEvent, now: Instant, into out: inout [PeerDirective]) {
        membershipOut.removeAll(keepingCapacity: membershipOut.capacity <= Self.keptCapacity)
        membership.on(event, now: now, into: &membershipOut)
        let directives = membershipOut
        for d in directives {
            switch d {
            case .send(let m, let to): out.append(.send(.membership(m), to: to))
            case .schedule(let t, let after): out.append(.schedule(.membership(t), after: after))
            case .statusChanged(let peer, let status):
                out.append(.statusChanged(peer, status))
                viewChanged = true
                switch status {
                case .alive: onWork(.peerUp(peer), now: now, into: &out)
                case .dead, .left: onWork(.peerDown(peer), now: now, into: &out)
                case .suspect: break
                }
            }
        }
    }

    private mutating func onSteal(_ event: StealEvent, now: Instant, into out: inout [PeerDirective]) {
        stealOut.removeAll(keepingCapacity: stealOut.capacity <= Self.keptCapacity)
        steal.on(event, now: now, into: &stealOut)
        let directives = stealOut
        for d in directives {
            switch d {
            case .send(let m, let to): out.append(.send(.steal(m), to: to))
            case .schedule(let t, let after): out.append(.schedule(.steal(t), after: after))
            case .give(let ids, let thief): onWork(.gave(ids, to: thief), now: now, into: &out)
            case .run(let tasks): onWork(.granted(tasks), now: now, into: &out)
            }
        }
    }

    /// Placement sees the live members (alive or suspect) when it has work and at most once a
    /// protocol period: a join storm changes the view a thousand times, and each change starts a
    /// repair walk.
    private mutating func tellPlacementTheView(now: Instant, into out: inout [PeerDirective]) {
        guard viewChanged else { return }
        viewChanged = false
        var live: [PeerID] = []
        var known = 0
        membership.forEachMember {
            if $0.status.isActive { live.append($0.peer) }
            if $0.status != .left { known += 1 }
        }
        onPlacement(.clusterSize(known), now: now, into: &out)
        onPlacement(.members(live), now: now, into: &out)
    }

    private mutating func onPlacement(_ event: PlacementEvent, now: Instant, into out: inout [PeerDirective]) {
        placementOut.removeAll(keepingCapacity: placementOut.capacity <= Self.keptCapacity)
        placement.on(event, now: now, into: &placementOut)
        for d in placementOut {
            switch d {
            case .send(let m, let to): out.append(.send(.placement(m), to: to))
            case .schedule(let t, let after): out.append(.schedule(.placement(t), after: after))
            case .persist(let o): out.append(.persist(o))
            case .putAcknowledged(let rid, let key, let version):
                out.append(.putAcknowledged(requestID: rid, key: key, version: version))
            case .putFailed(let rid, let key, let reason): out.append(.putFailed(requestID: rid, key: key, reason: reason))
            case .getResult(let rid, let object): out.append(.getResult(requestID: rid, object: object))
            case .getFailed(let rid, let key, let reason): out.append(.getFailed(requestID: rid, key: key, reason: reason))
            }
        }
    }

    private mutating func onWork(_ event: WorkEvent, now: Instant, into out: inout [PeerDirective]) {
        var directives: [WorkDirective] = []
        swap(&directives, &workOut)
        directives.removeAll(keepingCapacity: directives.capacity <= Self.keptCapacity)
        work.on(event, now: now, into: &directives)
        for d in directives {
            switch d {
            case .send(let m, let to): out.append(.send(.work(m), to: to))
            case .schedule(let t, let after): out.append(.schedule(.work(t), after: after))
            case .execute(let task, let key, let inputs, let attempt, let call):
                out.append(.execute(task: task, catalogueKey: key, inputs: inputs, attempt: attempt, call: call))
            case .workflowCompleted(let wf, let results, let failures):
                out.append(.workflowCompleted(workflow: wf, results: results, failures: failures))
            case .workflowFailed(let wf, let reason, let cause):
                out.append(.workflowFailed(workflow: wf, reason: reason, cause: cause))
            case .waited(let wf, let rid, let value): out.append(.waited(workflow: wf, requestID: rid, value: value))
            case .barrierReached(let wf, let rid): out.append(.barrierReached(workflow: wf, requestID: rid))
            case .resultApplied(let task): out.append(.resultApplied(task: task))
            case .taskReopened(let task): out.append(.taskReopened(task: task))
            case .tookOver(let wf, let from): out.append(.tookOver(workflow: wf, from: from))
            case .persistRecord(let write): out.append(.persistRecord(write))
            }
        }
        swap(&directives, &workOut)
        // Out of work after this step: try to steal at once rather than at the next period.
        switch event {
        case .executed, .failed: tryToSteal(now: now, into: &out)
        default: break
        }
    }
}
