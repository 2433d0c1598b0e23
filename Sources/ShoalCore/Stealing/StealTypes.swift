/// Tunables of the work-stealing machine. Every batch, table and delay here has a bound; `clamped`
/// is what the machine actually uses.
public struct StealSettings: Sendable, Hashable {
    /// Most tasks one request asks for and one grant carries (both sides clamp to it). 1...1024.
    public var stealBatchMax: Int
    /// Most steal requests a thief has awaiting a reply at once (each to a different victim).
    /// Default 1: a thief never has two outstanding requests. 1...8.
    public var maxOutstandingSteals: Int
    /// A request without reply after this long (up to an eighth more: timeouts are swept on a
    /// grid, `StealTimer.timeoutSweep`) is given up (the thief backs off). A reply that
    /// arrives later is still honoured: the victim has already given the tasks away.
    public var stealTimeout: Interval
    /// Times a request is sent again (same request id, to the same victim) when `stealTimeout`
    /// passes without an answer, before it is given up. The victim answers a repeated request
    /// from its grant table, so this recovers a lost request or a lost grant without the victim
    /// giving anything twice. Default 0 (one attempt, as the timing above states); on a lossy
    /// network set 1-2, or a lost grant's tasks are left to the owner's lineage recovery. 0...8.
    public var requestRetransmits: Int
    /// Back-off after the first failed steal (refusal, empty grant or timeout); it doubles with
    /// every consecutive failure up to `maxBackoff` and resets on a non-empty grant.
    public var retryBackoff: Interval
    /// Bound of the back-off.
    public var maxBackoff: Interval
    /// A peer is a victim candidate only with at least this many ready tasks in its gossiped load.
    public var minVictimReadyTasks: Int
    /// Tasks a victim always keeps in its ready queue; it also keeps at least its own free slots'
    /// worth (whichever is larger), so stealing never idles the victim. 0...1024.
    public var keepForSelf: Int
    /// Candidates sampled per victim choice ("power of two choices": 2). 1...8.
    public var candidateSample: Int
    /// Most catalogue keys a request carries (the thief's smallest keys first). 1...4096.
    public var maxCatalogueAdvertised: Int
    /// Most held datum ids a request carries (the first ones the shell reports). 0...4096.
    public var maxHoldingAdvertised: Int
    /// Victim: how many recent (thief, requestID) answers are remembered to answer duplicated
    /// requests idempotently (FIFO eviction). 1...65536.
    public var grantMemory: Int
    /// Thief: how many recent own requests are remembered to recognise late and duplicated
    /// replies (FIFO eviction). 1...65536.
    public var requestMemory: Int
    /// Victim: a request it cannot serve at once (no ready task to spare) is held this long
    /// instead of refused, and served as soon as tasks become ready: a thief learns of new work
    /// in a round trip, not at the next gossip of the victim's load. At most half of
    /// `stealTimeout` (a held request is answered before the thief gives it up); zero refuses at
    /// once. Default 20 ms.
    public var holdRequestsFor: Interval
    /// Victim: most requests held at once (one per thief); past it, requests are refused at once.
    /// 0...1024.
    public var maxHeldRequests: Int
    /// Victim: when it has ready tasks to spare, it tells this many peers that report none (chosen
    /// with its seeded generator) "ask me" (`offer`), at most once per `offerInterval`: thieves
    /// learn of new work in one message rather than at the next gossip of its load. 0 (off)...16.
    public var offerFanout: Int
    public var offerInterval: Interval

    public init() {
        stealBatchMax = 16
        maxOutstandingSteals = 1
        stealTimeout = .milliseconds(50)
        requestRetransmits = 0
        retryBackoff = .milliseconds(10)
        maxBackoff = .milliseconds(200)
        minVictimReadyTasks = 2
        keepForSelf = 1
        candidateSample = 2
        maxCatalogueAdvertised = 1_024
        maxHoldingAdvertised = 256
        grantMemory = 256
        requestMemory = 64
        holdRequestsFor = .milliseconds(20)
        maxHeldRequests = 64
        offerFanout = 2
        offerInterval = .milliseconds(50)
    }

    /// The settings with every field forced into its documented range.
    public var clamped: StealSettings {
        var s = self
        s.stealBatchMax = min(max(1, stealBatchMax), 1_024)
        s.maxOutstandingSteals = min(max(1, maxOutstandingSteals), 8)
        s.stealTimeout = max(.microseconds(1), stealTimeout)
        s.requestRetransmits = min(max(0, requestRetransmits), 8)
        s.retryBackoff = max(.microseconds(1), retryBackoff)
        s.maxBackoff = max(s.retryBackoff, maxBackoff)
        s.minVictimReadyTasks = max(1, minVictimReadyTasks)
        s.keepForSelf = min(max(0, keepForSelf), 1_024)
        s.candidateSample = min(max(1, candidateSample), 8)
        s.maxCatalogueAdvertised = min(max(1, maxCatalogueAdvertised), 4_096)
        s.maxHoldingAdvertised = min(max(0, maxHoldingAdvertised), 4_096)
        s.grantMemory = min(max(1, grantMemory), 65_536)
        s.requestMemory = min(max(1, requestMemory), 65_536)
        s.holdRequestsFor = min(max(.zero, holdRequestsFor), Interval(nanoseconds: s.stealTimeout.nanoseconds / 2))
        s.maxHeldRequests = min(max(0, maxHeldRequests), 1_024)
        s.offerFanout = min(max(0, offerFanout), 16)
        s.offerInterval = max(.milliseconds(1), offerInterval)
        return s
    }
}

/// Where one input of a task lives.
public struct DataLocation: Sendable, Hashable, Codable {
    /// The version.
    public var datum: VersionRef
    public var bytes: UInt64
    /// The peer holding the copy the owner recorded (the owner tracks one holder per version;
    /// one field, not a list: a ready task is offered to thieves every protocol period, and a
    /// list cost an allocation per input each time).
    public var holder: PeerID
    /// The checksum the owner recorded for this version: a fetched copy must match it.
    public var checksum: UInt64
    /// The version has no value (its writer failed and the failure was ignored): nothing to
    /// fetch; the body fails if it reads it.
    public var absent: Bool

    public init(datum: VersionRef, bytes: UInt64, holder: PeerID, checksum: UInt64 = 0, absent: Bool = false) {
        self.datum = datum
        self.bytes = bytes
        self.holder = holder
        self.checksum = checksum
        self.absent = absent
    }
}

/// A ready task that may move to another peer.
public struct StealableTask: Sendable, Hashable, Codable {
    public var id: TaskRef
    /// The peer owning the task's workflow: results go there.
    public var owner: PeerID
    /// Which registered task body it runs (a key of the peers' catalogues).
    public var catalogueKey: UInt64
    public var inputs: [DataLocation]
    /// The versions the task writes, in access order.
    public var outputs: [VersionRef]
    /// Which attempt this run is (1 for the first; the owner counts failed ones).
    public var attempt: UInt16 = 1
    /// The call to run, for a real body (nil: a modelled one).
    public var call: ExecutableCall? = nil

    public init(
        id: TaskRef, owner: PeerID, catalogueKey: UInt64, inputs: [DataLocation] = [], outputs: [VersionRef] = []
    ) {
        self.id = id
        self.owner = owner
        self.catalogueKey = catalogueKey
        self.inputs = inputs
        self.outputs = outputs
    }
}

/// The messages of the stealing protocol. The network may duplicate, drop or reorder them:
/// requests are answered idempotently per (thief, requestID), replies are consumed once.
public enum StealMessage: Sendable, Hashable {
    /// "Give me up to `max` ready tasks I can run." `catalogue` is sorted; `holding` lists datum
    /// ids the thief holds.
    case request(requestID: UInt64, max: Int, catalogue: [UInt64], holding: [VersionRef])
    /// The tasks now belong to the thief (never empty; an empty grant is sent as `refused`).
    case reply(requestID: UInt64, granted: [StealableTask])
    case refused(requestID: UInt64)
    /// "I have `readyTasks` ready tasks to spare, of bodies in `catalogue` (a summary,
    /// `StealCatalogue`): ask me." Unsolicited; a thief may ignore it.
    case offer(readyTasks: Int, catalogue: UInt64)
}

/// Timers the machine asks its shell to run; each comes back as `.timer(_)`. Stale ones are
/// ignored, so the shell never cancels a timer.
public enum StealTimer: Sendable, Hashable {
    /// Requests that got no answer in `stealTimeout` time out (one sweep timer for all of them,
    /// on a grid of an eighth of `stealTimeout`: a request times out up to that much late).
    case timeoutSweep
    /// The back-off is over: if the peer is still idle, try again.
    case retry
    /// Victim: held requests whose time is up are refused.
    case heldSweep
}

public enum StealEvent: Sendable, Hashable {
    /// Idle check: the shell sends it when this peer has free slots and an empty ready queue.
    case tick
    /// The membership view (any order; the machine sorts).
    case loadView([MemberInfo])
    /// This peer's own state: free slots, ready queue length, the task keys it can run (any
    /// order; the machine sorts and dedups) and the datum ids it holds (the shell passes the
    /// most relevant first; at most `maxHoldingAdvertised` are advertised).
    case localState(freeSlots: Int, readyTasks: Int, catalogue: [UInt64], holding: [VersionRef])
    case stealRequest(from: PeerID, requestID: UInt64, max: Int, catalogue: [UInt64], holding: [VersionRef])
    case stealReply(from: PeerID, requestID: UInt64, granted: [StealableTask])
    case stealRefused(from: PeerID, requestID: UInt64)
    case stealOffer(from: PeerID, readyTasks: Int, catalogue: UInt64)
    /// Victim side: it has ready tasks to spare; `candidates` are the live peers that report none
    /// (any order). It offers them to some (`offerFanout`), if `offerInterval` has passed.
    case offerWork(candidates: [PeerID])
    case timer(StealTimer)
    /// Victim side: the tasks this peer could give away, in its queue order (replaces the last).
    case readyQueue([StealableTask])
    /// Victim side: serve `thief`'s held request from the ready queue just given, if it has
    /// tasks to spare now (the shell sends it when its ready tasks grew while requests are held).
    case serveHeld(thief: PeerID)

    /// The event of a received message.
    public static func received(_ message: StealMessage, from: PeerID) -> StealEvent {
        switch message {
        case .request(let id, let max, let catalogue, let holding):
            return .stealRequest(from: from, requestID: id, max: max, catalogue: catalogue, holding: holding)
        case .reply(let id, let granted): return .stealReply(from: from, requestID: id, granted: granted)
        case .refused(let id): return .stealRefused(from: from, requestID: id)
        case .offer(let ready, let catalogue): return .stealOffer(from: from, readyTasks: ready, catalogue: catalogue)
        }
    }
}

public enum StealDirective: Sendable, Hashable {
    case send(StealMessage, to: PeerID)
    case schedule(StealTimer, after: Interval)
    /// Victim: remove these tasks from the local ready queue; they now belong to the thief `to`.
    case give([TaskRef], to: PeerID)
    /// Thief: enqueue the granted tasks locally.
    case run([StealableTask])
}

/// What the machine has done, for reports and tests.
public struct StealCounters: Sendable, Hashable, Codable {
    /// Thief: requests sent.
    public var stealsTried = 0
    /// Thief: non-empty grants received (late ones included).
    public var stealsGranted = 0
    /// Thief: tasks received in grants and run.
    public var tasksStolen = 0
    /// Victim: tasks given away.
    public var tasksGiven = 0
    /// Thief: refusals (and empty grants) received for its requests.
    public var refusals = 0
    /// Thief: requests given up after `stealTimeout` (and their retransmissions).
    public var timeouts = 0
    /// Thief: requests sent again after a timeout (`requestRetransmits`).
    public var retransmits = 0
    /// Thief: grants that arrived after their request timed out (still run).
    public var lateGrants = 0
    /// Victim: requests answered with a refusal.
    public var refusalsSent = 0
    /// Victim: duplicated requests answered again from the grant table.
    public var duplicateRequests = 0
    /// Victim: requests held because nothing could be given at once, and those of them served
    /// with tasks before their time was up (the rest were refused).
    public var requestsHeld = 0
    public var heldRequestsServed = 0
    /// Victim: offers sent; thief: offers taken (the offering peer became the one asked first).
    public var offersSent = 0
    public var offersTaken = 0
    /// Messages from other peers dropped as out of bounds (`StealMachine.acceptable`): a request
    /// with more catalogue keys or held versions than any request carries, a grant of more tasks
    /// than any request asks for, or of a task with more accesses or holders than a task has.
    public var messagesDropped = 0

    public init() {}

    /// Adds another peer's counters (a run's totals).
    public mutating func add(_ o: StealCounters) {
        stealsTried += o.stealsTried
        stealsGranted += o.stealsGranted
        tasksStolen += o.tasksStolen
        tasksGiven += o.tasksGiven
        refusals += o.refusals
        timeouts += o.timeouts
        retransmits += o.retransmits
        lateGrants += o.lateGrants
        refusalsSent += o.refusalsSent
        duplicateRequests += o.duplicateRequests
        requestsHeld += o.requestsHeld
        heldRequestsServed += o.heldRequestsServed
        offersSent += o.offersSent
        offersTaken += o.offersTaken
        messagesDropped += o.messagesDropped
    }
}

/// The catalogue summary a peer gossips in `PeerLoad.catalogue`: a 64-bit Bloom-style mask with
/// one bit per task key (the key's hash mod 64). Two catalogues may overlap only if their masks
/// intersect; a false positive costs one refusal, never a wrong task. An empty catalogue is 0.
public enum StealCatalogue {
    public static func bit(_ key: UInt64) -> UInt64 {
        var z = key &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return 1 << (z & 63)
    }

    public static func summary<S: Sequence>(_ keys: S) -> UInt64 where S.Element == UInt64 {
        keys.reduce(0) { $0 | bit($1) }
    }
}
