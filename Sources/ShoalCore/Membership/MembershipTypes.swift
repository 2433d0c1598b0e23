/// Tunables of the SWIM membership machine. Every fan-out and buffer here has a bound.
public struct MembershipSettings: Sendable, Hashable {
    /// Time between two probes of this peer.
    public var protocolPeriod: Interval
    /// Deadline of a direct ping's ack; after it the target is probed indirectly (ping-req).
    public var pingTimeout: Interval
    /// Number of helpers asked to ping the target on our behalf (k of the SWIM paper).
    public var indirectPingCount: Int
    /// A suspect becomes dead after this many protocol periods without refutation.
    public var suspicionPeriods: Int
    /// Most updates piggybacked on one message.
    public var maxPiggyback: Int
    /// Each update is piggybacked about `retransmitMultiplier * ceil(log2(n + 1))` times.
    public var retransmitMultiplier: Int
    /// Bound of a join reply's and a sync reply's member list.
    public var maxSyncMembers: Int
    /// Deadline of the indirect probe, counted from the ping-req; after it the target is suspected.
    /// Also how long a helper remembers a ping it sends on someone's behalf.
    public var indirectPingTimeout: Interval
    /// Time between two join attempts while no seed has replied.
    public var joinRetryInterval: Interval
    /// Most join attempts (the first included); after them the peer keeps the view it has.
    public var maxJoinAttempts: Int
    /// Most seeds one join attempt is sent to (attempts rotate through the seeds).
    public var joinFanout: Int
    /// Most members told directly about a graceful leave.
    public var leaveFanout: Int
    /// Bound of the dissemination buffer; when full, the most-sent update is dropped.
    public var maxGossipUpdates: Int
    /// Most pings this peer has outstanding on others' behalf; further ping-reqs are ignored
    /// (the requester then relies on its other helpers).
    public var maxPendingRelays: Int
    /// Anti-entropy: every this many protocol periods, send a random member a digest of this
    /// peer's view (`sync`); it answers with its members in the digest buckets that differ
    /// (`syncReply`, bounded by `maxSyncMembers`, merged without re-gossip), and with nothing when
    /// the views agree. 0 turns it off (pure SWIM). Piggybacked gossip carries about 8 updates a
    /// message, so a burst of changes larger than that (many joins, a partition that heals)
    /// converges by these pulls. Default 5 (every second): an exchange between agreeing views is
    /// one small message, so pulling often costs little, and 1,000 peers joining at once agree in
    /// about 4 s in the simulator (15 s when pulling every 25 periods, over 30 s without pulls).
    public var syncEveryPeriods: Int
    /// Gossip to the dead: every this many protocol periods, ping one member believed dead,
    /// telling it so. A peer that was only cut off (a partition that healed) or that restarted
    /// then refutes with a higher incarnation and is revived everywhere; without this, two sides
    /// that declared each other dead never speak again. 0 turns it off.
    public var deadProbePeriods: Int
    /// Most members the table holds, this peer included. Members are never removed (a dead one
    /// keeps its incarnation), so without a bound one peer's gossip about made-up peers would grow
    /// the table for ever; a new member beyond it is refused (`MembershipCounters.membersRefused`).
    /// Also the longest member list a join or sync reply may carry. Default 131,072 (the
    /// simulator's largest cluster is 100,000 peers); at least 1.
    public var maxMembers: Int

    /// Sets the protocol period and the direct ping's deadline that goes with it, 3/10 of the
    /// period (the defaults' ratio: 60 ms of 200); the other timings stay as they are.
    public mutating func setProtocolPeriod(_ period: Interval) {
        protocolPeriod = period
        pingTimeout = Interval(nanoseconds: period.nanoseconds * 3 / 10)
    }

    public init() {
        protocolPeriod = .milliseconds(200)
        pingTimeout = .milliseconds(60)
        indirectPingCount = 3
        suspicionPeriods = 5
        maxPiggyback = 8
        retransmitMultiplier = 3
        maxSyncMembers = 2_000
        indirectPingTimeout = .milliseconds(120)
        joinRetryInterval = .milliseconds(1_000)
        maxJoinAttempts = 5
        joinFanout = 3
        leaveFanout = 3
        maxGossipUpdates = 1_024
        maxPendingRelays = 64
        syncEveryPeriods = 5
        deadProbePeriods = 5
        maxMembers = 131_072
    }

    /// How long a member stays suspect before it is declared dead.
    public var suspicionTimeout: Interval { protocolPeriod * Int64(max(1, suspicionPeriods)) }
}

/// What the membership machine refused, for reports and tests.
public struct MembershipCounters: Sendable, Hashable, Codable {
    /// Messages from other peers dropped as out of bounds (`Membership.acceptable`): an update list
    /// longer than a message of its kind carries, a digest that is not 1 to 64 buckets (a power of
    /// two), a ping request for the reserved id, a message from the reserved id.
    public var messagesDropped = 0
    /// Updates ignored as malformed: an incarnation or load version above
    /// `MemberTable.counterLimit`, or about the reserved id `PeerID(raw: .max)` (no peer's id: the
    /// work machine's "nobody").
    public var updatesIgnored = 0
    /// Members not added because the table holds `maxMembers` already.
    public var membersRefused = 0

    public init() {}

    /// Adds another peer's counters (a run's totals).
    public mutating func add(_ o: MembershipCounters) {
        messagesDropped += o.messagesDropped
        updatesIgnored += o.updatesIgnored
        membersRefused += o.membersRefused
    }
}

/// A member's liveness as this peer believes it. `dead` and `left` hold for one incarnation: the
/// peer comes back only by refuting them with a higher incarnation.
public enum MemberStatus: UInt8, Sendable, Hashable, Codable {
    case alive, suspect, dead, left

    /// Alive or suspect: still counted as part of the cluster and still probed.
    public var isActive: Bool { self == .alive || self == .suspect }
}

/// A peer's load, carried in its own membership update.
public struct PeerLoad: Sendable, Hashable, Codable {
    public var freeSlots: UInt32
    public var readyTasks: UInt32
    public var storedBytes: UInt64
    public var catalogue: UInt64

    public init(freeSlots: UInt32 = 0, readyTasks: UInt32 = 0, storedBytes: UInt64 = 0, catalogue: UInt64 = 0) {
        self.freeSlots = freeSlots
        self.readyTasks = readyTasks
        self.storedBytes = storedBytes
        self.catalogue = catalogue
    }
}

/// One gossiped fact about a member, and (as `MemberInfo`) what a peer holds about it.
public struct MemberUpdate: Sendable, Hashable, Codable {
    public var peer: PeerID
    public var status: MemberStatus
    public var incarnation: UInt64
    public var load: PeerLoad
    /// Orders the peer's load reports independently of its status: a receiver takes `load` only
    /// from a report with a higher `loadVersion` than the one it holds, so duplicated or
    /// reordered load gossip cannot make views flap or disagree forever. The owner bumps it on
    /// every `setLoad`.
    public var loadVersion: UInt64

    public init(
        peer: PeerID, status: MemberStatus, incarnation: UInt64, load: PeerLoad = PeerLoad(), loadVersion: UInt64 = 0
    ) {
        self.peer = peer
        self.status = status
        self.incarnation = incarnation
        self.load = load
        self.loadVersion = loadVersion
    }

    /// Estimated encoded size: id, status, incarnation and the four load fields, plus framing.
    public static let estimatedByteSize = 8 + 1 + 8 + 4 + 4 + 8 + 8 + 8 + 3
}

/// What this peer knows of a member: the same fields as the fact it gossips about it.
public typealias MemberInfo = MemberUpdate

extension MemberUpdate {
    /// The update to gossip for this knowledge (itself: knowledge and gossip share one shape).
    public var update: MemberUpdate { self }
}

/// The messages of the membership protocol. Every one may be duplicated or reordered by the
/// network; handling them is idempotent.
public enum MembershipMessage: Sendable, Hashable {
    case ping(sequence: UInt64, updates: [MemberUpdate])
    case ack(sequence: UInt64, updates: [MemberUpdate])
    /// "Ping `target` for me and relay its ack with `sequence`."
    case pingRequest(sequence: UInt64, target: PeerID, updates: [MemberUpdate])
    /// Sent to a seed; carries the joiner's own update.
    case join(updates: [MemberUpdate])
    /// The seed's view, bounded by `maxSyncMembers`, the seed first.
    case joinReply(members: [MemberUpdate])
    /// Anti-entropy: the sender's view as a digest (`digest.count` buckets, a power of two from 1
    /// to 64, each the wrapping sum of a hash of (peer, incarnation, status, load version) over the
    /// members of the bucket), and the sender's own update.
    case sync(digest: [UInt64], updates: [MemberUpdate])
    /// The members of the buckets whose digests differed, bounded by `maxSyncMembers`.
    case syncReply(members: [MemberUpdate])

    /// The updates the message carries.
    public var updates: [MemberUpdate] {
        switch self {
        case .ping(_, let u), .ack(_, let u), .pingRequest(_, _, let u), .join(let u), .sync(_, let u): return u
        case .joinReply(let m), .syncReply(let m): return m
        }
    }

    /// An estimate of the encoded size in bytes, for a simulated network's bandwidth model.
    public var byteSize: Int {
        let header = 16
        let list = 4 + updates.count * MemberUpdate.estimatedByteSize
        switch self {
        case .ping, .ack: return header + 8 + list
        case .pingRequest: return header + 8 + 8 + list
        case .join, .joinReply, .syncReply: return header + list
        case .sync(let digest, _): return header + 4 + 8 * digest.count + list
        }
    }
}

/// Timers the machine asks its shell to run; each comes back as `.timer(_)`.
public enum MembershipTimer: Sendable, Hashable {
    case protocolPeriod
    case pingTimeout(sequence: UInt64)
    case indirectTimeout(sequence: UInt64)
    case suspicion(PeerID, incarnation: UInt64)
    case joinRetry
}

public enum MembershipEvent: Sendable {
    case start(seeds: [PeerID])
    case message(MembershipMessage, from: PeerID)
    case timer(MembershipTimer)
    case leave
    case setLoad(PeerLoad)
}

public enum MembershipDirective: Sendable, Hashable {
    case send(MembershipMessage, to: PeerID)
    case schedule(MembershipTimer, after: Interval)
    /// A member's status changed in this peer's view (also on first learning of a member).
    case statusChanged(PeerID, MemberStatus)
}
